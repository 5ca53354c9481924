"""``debug.delay``: an op that only waits, logs and optionally fails.

Operators use it (as Ganeti's ``gnt-debug delay``) to check that the queue, the locks and
the workers answer; the benchmarks use it to measure the queue without any real work.
"""

from __future__ import annotations

from typing import Any

from herd.errors import HerdError
from herd.ops.base import LockSpec, Op, OpContext, register
from herd.ops.common import get_node
from herd.ops.params import Param


@register
class DebugDelay(Op):
    OP_ID = "debug.delay"
    SUMMARY = "Wait, optionally holding locks, then succeed or fail on request"
    PARAMS = (
        Param(
            "duration",
            float,
            default=0.0,
            minimum=0,
            maximum=86400,
            doc="seconds to wait",
            cli_positional=True,
        ),
        Param(
            "lock_nodes",
            list,
            default=[],
            item_type=str,
            doc="node lock names to hold exclusively while waiting",
        ),
        Param(
            "opportunistic",
            bool,
            default=False,
            doc="take only those of lock_nodes that are free now (at least one)",
        ),
        Param(
            "log_messages",
            int,
            default=0,
            minimum=0,
            maximum=10000,
            doc="number of log lines to write while waiting",
        ),
        Param("fail", bool, default=False, doc="raise an error at the end"),
        Param(
            "spawn_jobs",
            int,
            default=0,
            minimum=0,
            maximum=1000,
            doc="submit this many follow-up no-op jobs (they inherit this job's reasons)",
        ),
    )

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        if level == "node" and self.params["lock_nodes"]:
            uuids = tuple(
                get_node(ctx, name, f"lock_nodes[{i}]").uuid
                for i, name in enumerate(self.params["lock_nodes"])
            )
            return LockSpec(uuids, opportunistic=self.params["opportunistic"])
        return super().declare_locks(level, ctx)

    def run(self, ctx: OpContext) -> Any:
        count = self.params["log_messages"]
        duration = self.params["duration"]
        steps = max(count, 1)
        for i in range(steps):
            if count:
                ctx.log(f"delay step {i + 1}/{count}")
            if duration and ctx.cancel.wait(duration / steps):
                ctx.check_cancel()
        if self.params["fail"]:
            raise HerdError("debug.delay failed on request")
        spawned = ctx.submit_jobs(
            [{"ops": [{"op": self.OP_ID}]} for _ in range(self.params["spawn_jobs"])]
        )
        names = sorted(ctx.store.get("node", uuid).name for uuid in ctx.owned("node"))
        return {"slept": duration, "locked_nodes": names, "spawned": spawned}
