"""The master's node services: rpc's, with a node's errors cleaned of what the call carried.

A DRBD shared secret becomes free text only on a node: drbdadm hands it to drbdsetup as
``--shared-secret=…`` and quotes that command line when it fails. ``herd-node`` cleans its
drbdadm output (``herd.node.storage.drbd``); the master cuts the secrets out once more
where a node's error arrives, so an agent of an older release, or a node tool that quotes
its input some other way, cannot bring one into a job's error, its log, or an op's message
built from the error.

Why here and why per call: rpc carries calls without knowing what they mean, so it cannot
tell a secret from a path, and the job queue's scrub knows only the job's own parameters.
This is where the config's declarations (``SECRET_KEYS``) meet the node calls. The secrets
looked for are those of this call's arguments, the disks the op is driving, rather than
every DRBD secret of the config: the cost is one walk of the arguments of a failed call,
nothing on success and nothing per log line, whatever the size of the cluster, and it also
covers a disk whose creation failed before its instance was ever written to the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from herd.config.model import SECRET_KEYS
from herd.errors import HerdError
from herd.redact import scrub_error, secret_leaves
from herd.rpc.protocol import CallResult
from herd.rpc.services import Reachable, Services


@dataclass
class MasterServices(Services):
    """``Services`` whose node errors never quote a secret the call carried."""

    def call(
        self,
        node: Reachable,
        action: str,
        args: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        try:
            return super().call(node, action, args, timeout)
        except HerdError as exc:
            _without_sent_secrets(exc, args)
            raise

    def call_many(
        self,
        nodes: Sequence[Reachable],
        action: str,
        args: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, CallResult]:
        answers = super().call_many(nodes, action, args, timeout)
        for answer in answers.values():
            if answer.error is not None:
                _without_sent_secrets(answer.error, args)
        return answers


def _without_sent_secrets(error: HerdError, args: dict[str, Any] | None) -> HerdError:
    return scrub_error(error, SECRET_KEYS, secret_leaves(args or {}, SECRET_KEYS))
