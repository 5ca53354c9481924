"""The cluster's SSH key in root's ``authorized_keys``: allowed to run herd-node, nothing else.

Whoever holds the cluster key (the master's private key file) would otherwise have a root
shell on every node. Everything the master does on a node goes through ``herd-node
--serve`` (node actions over one session; disks stream node to node over TLS, never over
the master's SSH), so the key's line forces that command and ``restrict`` turns off
port, agent and X11 forwarding, ptys and ``~/.ssh/rc``. Editing the file is done here, in
one place, for both the first contact (with the operator's bootstrap key) and node
removal (with the cluster key itself, whose forced command is this agent).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from herd.errors import ValidationError
from herd.node.actions.files import _atomic_write
from herd.node.actions.registry import NodeContext, action

#: The only command the cluster key may run; the master asks for exactly this one.
FORCED_COMMAND = "herd-node --serve"
KEY_OPTIONS = f'restrict,command="{FORCED_COMMAND}"'
_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa")
#: One line, no options of its own: a caller must not be able to add a second line or
#: loosen the restriction from inside the key text.
_KEY_LINE = re.compile(
    rf"(?P<type>{'|'.join(_KEY_TYPES)}) (?P<blob>[A-Za-z0-9+/]+={{0,2}})( [\x21-\x7e ]*)?"
)


def authorized_keys() -> Path:
    """Root's file, found like sshd's default ``.ssh/authorized_keys`` (from ``$HOME``)."""
    return Path.home() / ".ssh" / "authorized_keys"


def key_blob(key: str) -> tuple[str, str]:
    """The ``(type, base64)`` of a public key line, which identifies it in any line."""
    match = _KEY_LINE.fullmatch(key)
    if match is None:
        raise ValidationError(
            "key",
            key,
            "one SSH public key line 'TYPE BASE64 [COMMENT]' of " + ", ".join(_KEY_TYPES),
        )
    return match["type"], match["blob"]


def restricted_line(key: str) -> str:
    """The ``authorized_keys`` line that lets ``key`` run herd-node only."""
    key_blob(key)
    return f"{KEY_OPTIONS} {key}"


def _names(line: str, blob: tuple[str, str]) -> bool:
    words = line.split()
    return any(tuple(words[i : i + 2]) == blob for i in range(len(words) - 1))


def _edit(blob: tuple[str, str], add: str | None) -> tuple[bool, bool]:
    """Drop every line of ``blob``, then append ``add``: (changed, the key was there)."""
    path = authorized_keys()
    old = path.read_text().splitlines() if path.exists() else []
    mine = [line for line in old if _names(line, blob)]
    if mine == ([add] if add else []):
        return False, bool(mine)
    new = [line for line in old if not _names(line, blob)] + ([add] if add else [])
    path.parent.mkdir(mode=0o700, exist_ok=True)
    _atomic_write(path, "".join(f"{line}\n" for line in new).encode(), 0o600)
    return True, bool(mine)


@action("ssh_key_authorize")
def authorize(ctx: NodeContext, key: str) -> dict[str, Any]:
    """Make ``key`` authorised exactly once, restricted to herd-node; an older line for the
    same key (unrestricted, from before) is replaced. ``added``: it was not there at all."""
    changed, had = _edit(key_blob(key), restricted_line(key))
    return {"changed": changed, "added": not had}


@action("ssh_key_revoke")
def revoke(ctx: NodeContext, key: str) -> dict[str, Any]:
    """Remove every line of ``key``, restricted or not; a missing key is success."""
    changed, _ = _edit(key_blob(key), None)
    return {"changed": changed}
