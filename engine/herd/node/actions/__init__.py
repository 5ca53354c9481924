"""Node actions: what the master may ask ``herd-node`` to do.

Modules listed in ``ACTION_MODULES`` register their actions on import; the agent loads
them once at start, so a session pays the import cost once, not per request.  Other
layers (storage, hypervisors, transfers) add their module here.
"""

from __future__ import annotations

import importlib

ACTION_MODULES = (
    "herd.node.actions.system",
    "herd.node.actions.sshkeys",
    "herd.node.actions.files",
    "herd.node.actions.osinstall",
    "herd.node.actions.storage",
    "herd.node.actions.instance",
    "herd.node.actions.drbd",
    "herd.node.actions.transfer",
    "herd.node.actions.export",
    "herd.node.actions.inventory",
)


def load_all() -> None:
    """Import every action module so its actions are registered."""
    for module in ACTION_MODULES:
        importlib.import_module(module)
