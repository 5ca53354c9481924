"""Opportunistic tries of a job, put back in the queue between tries.

An opportunistic create locks only the nodes free right now; when the instance would fit
on the cluster but not on those nodes it fails with TemporarilyInfeasibleError ("try
again"). Ganeti left the retrying to the user ("planned: internal retry"). Here the queue
does it: the try ends, its locks are given back, and the job goes back to the queue with a
not-before time, so no worker sleeps through the delay and the retries survive a master
restart like any queued job. Clients (CLI, Ansible) wait on one job id and read every try
in its log. After the last opportunistic try, the op runs once more with blocking locks,
so the job fails only if the instance cannot be placed at all.

An op opts in by declaring the parameters ``opportunistic`` (bool),
``opportunistic_tries`` (int) and ``opportunistic_delay`` (float seconds).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from herd.errors import TemporarilyInfeasibleError
from herd.ops.base import Op

OPPORTUNISTIC = "opportunistic"
TRIES = "opportunistic_tries"
DELAY = "opportunistic_delay"
#: Each delay is spread by +/- this fraction, so creates that failed together (they
#: lost the same nodes to the same holder) do not all come back at the same instant.
JITTER = 0.2


@dataclass(frozen=True)
class NextTry:
    """What follows a temporarily infeasible try: wait ``delay`` s, then try again."""

    delay: float
    opportunistic: bool


def retries(op_class: type[Op]) -> bool:
    """Whether the op declares the parameters that let the queue retry it."""
    names = {p.name for p in op_class.PARAMS}
    return {OPPORTUNISTIC, TRIES, DELAY} <= names


def params_for_try(op_class: type[Op], params: dict[str, Any], done: int) -> dict[str, Any]:
    """The op's parameters for its try number ``done`` (0-based).

    With ``opportunistic_tries`` = N > 0, tries 0..N-1 lock opportunistically and try N
    blocks; N = 0 leaves the parameters as submitted (one try, no retry).
    """
    if not retries(op_class) or not params.get(TRIES):
        return params
    return {**params, OPPORTUNISTIC: done < params[TRIES]}


def next_try(
    op_class: type[Op],
    params: dict[str, Any],
    done: int,
    error: dict[str, Any],
    rng: random.Random | None = None,
) -> NextTry | None:
    """The next try after try ``done`` failed with ``error``, or None if the error stands.

    Only "temporarily infeasible" is retried: any other error (the instance fits nowhere,
    bad input, a node failing) would fail the same way again.
    """
    if error.get("type") != TemporarilyInfeasibleError.kind or not retries(op_class):
        return None
    tries = int(params.get(TRIES) or 0)
    if done >= tries:
        return None
    if done + 1 == tries:
        return NextTry(0.0, opportunistic=False)
    spread = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return NextTry(float(params[DELAY]) * spread, opportunistic=True)
