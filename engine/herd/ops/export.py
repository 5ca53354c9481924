"""Exports (backups) kept on nodes: listing and removing them, and the steps that
``instance.export`` and ``instance.import`` share.

An export lives on one node (``herd.node.actions.export``): a stream file per disk plus a
manifest describing the instance. The master keeps no record of it; the nodes are asked,
so an export copied to a node by hand (or left from a previous cluster) is found too.
"""

from __future__ import annotations

from typing import Any

from herd.config.model import Node
from herd.errors import NotFoundError
from herd.ops.base import ALL_LOCKS, LockSpec, Op, OpContext, register
from herd.ops.common import get_node
from herd.ops.params import Param, check_name
from herd.ops.transfer import new_transfer_id, report, watch
from herd.ops.undo import node_arg, node_of, undo_handler

MANIFEST_VERSION = 1


def run_file_end(
    ctx: OpContext, node: Node, start: str, args: dict[str, Any], role: str, label: str
) -> dict[str, Any]:
    """Start one file end (export, import or digest) on ``node`` and wait for it.

    Its abort is registered first, so a failure or a cancel stops the worker and removes a
    half-written stream file. Returns the end's final status (with its digest).
    """
    tid = new_transfer_id()
    ctx.undo(
        f"abort {role} {tid} on {node.name}",
        "export.abort",
        node=node_arg(node),
        transfer_id=tid,
        role=role,
    )
    ctx.services.call(node, start, {"transfer_id": tid, **args})
    # With the node's name, as ``transfer.status`` gives it: a failure then says where.
    (done,) = watch(
        ctx,
        label,
        lambda: [
            {
                **ctx.services.call(node, "export_status", {"transfer_id": tid, "role": role}),
                "node": node.name,
            }
        ],
    )
    report(ctx, label, done, final=True)
    return done


def begin_work(ctx: OpContext, node: Node) -> tuple[str, str]:
    """A fresh work directory on ``node``, removed again if the op fails: (token, path)."""
    token = new_transfer_id()
    ctx.undo(
        f"remove the work directory {token} on {node.name}",
        "export.discard",
        node=node_arg(node),
        token=token,
    )
    return token, ctx.services.call(node, "export_begin", {"token": token})["path"]


@undo_handler("export.abort")
def _abort(ctx: OpContext, args: dict[str, Any]) -> None:
    ctx.services.call(
        node_of(args), "export_abort", {"transfer_id": args["transfer_id"], "role": args["role"]}
    )


@undo_handler("export.discard")
def _discard(ctx: OpContext, args: dict[str, Any]) -> None:
    ctx.services.call(node_of(args), "export_discard", {"token": args["token"]})


def read_manifest(ctx: OpContext, node: Node, name: str) -> dict[str, Any]:
    """Export ``name`` on ``node``; NotFoundError names the node when there is none."""
    found = ctx.services.call(node, "export_list", {"names": [name]})["exports"]
    if not found:
        raise NotFoundError(f"node {node.name} has no export {name}", field="src_name")
    manifest: dict[str, Any] = found[0]
    return manifest


def online(nodes: list[Node]) -> list[Node]:
    return [n for n in nodes if not n.offline]


def collect(ctx: OpContext, nodes: list[Node], names: list[str] | None) -> dict[str, Any]:
    """Every node's exports, by node name; nodes that could not answer under ``failed``."""
    answers = ctx.services.call_many(online(nodes), "export_list", {"names": names})
    exports: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, str] = {}
    for node in sorted(answers):
        answer = answers[node]
        if answer.ok and answer.result is not None:
            exports[node] = answer.result["exports"]
        else:
            failed[node] = str(answer.error)
    return {"exports": exports, "failed": failed}


@register
class ExportList(Op):
    OP_ID = "export.list"
    SUMMARY = "List the instance exports kept on the nodes"
    PARAMS = (
        Param("nodes", list, item_type=str, doc="nodes to ask (default: every online node)"),
        Param("names", list, item_type=str, doc="only these exports (instance names)"),
    )

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        if level == "node":
            return LockSpec(ALL_LOCKS, shared=True)
        return super().declare_locks(level, ctx)

    def nodes(self, ctx: OpContext) -> list[Node]:
        if self.params["nodes"] is None:
            return ctx.store.list("node")
        return [get_node(ctx, name, "nodes") for name in self.params["nodes"]]

    def check(self, ctx: OpContext) -> None:
        self.nodes(ctx)

    def run(self, ctx: OpContext) -> Any:
        return {"changed": False, **collect(ctx, self.nodes(ctx), self.params["names"])}


@register
class ExportRemove(Op):
    OP_ID = "export.remove"
    SUMMARY = "Delete an instance export from the nodes that hold it"
    PARAMS = (
        Param("name", str, required=True, check=check_name, cli_positional=True, doc="export name"),
        Param("node", str, doc="only the export on this node (default: on every node)"),
    )

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        if level == "node":
            if self.params["node"] is not None:
                return LockSpec((get_node(ctx, self.params["node"], "node").uuid,))
            return LockSpec(ALL_LOCKS)
        return super().declare_locks(level, ctx)

    def run(self, ctx: OpContext) -> Any:
        p = self.params
        nodes = (
            [get_node(ctx, p["node"], "node")] if p["node"] is not None else ctx.store.list("node")
        )
        removed = []
        for node in online(nodes):
            if ctx.services.call(node, "export_remove", {"name": p["name"]})["changed"]:
                removed.append(node.name)
                ctx.log(f"export {p['name']} removed from {node.name}")
        return {"changed": bool(removed), "removed_from": removed}
