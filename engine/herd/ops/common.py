"""What many ops share: config lookups and the cluster-wide choices (as Ganeti's
``cmdlib/common.py``).

One place so an op module imports helpers from here rather than from another op's
module: ``node`` borrowing from ``cluster`` (or ``instance_export`` from
``instance_remote``) ties ops together that only share a lookup. Hypervisor names and
parameters are data in ``herd.hvparams``.
"""

from __future__ import annotations

from herd.config.model import Cluster, Node, NodeGroup
from herd.errors import PrerequisiteError, ValidationError
from herd.ops.base import OpContext

#: Disk templates a cluster can enable (``diskless`` needs no enabling).
DISK_TEMPLATES = ("file", "sharedfile", "plain", "drbd")
#: What an instance's ``disk_template`` may be.
INSTANCE_DISK_TEMPLATES = ("diskless", *DISK_TEMPLATES)
#: Compression every node has built in; ``compression_tools`` may add custom scripts.
BUILTIN_COMPRESSION = ("none", "gzip", "gzip-fast", "gzip-slow", "lzop", "zstd", "zstd-fast", "lz4")
#: The node group ``cluster.init`` creates and ``node.add`` uses by default.
DEFAULT_GROUP = "default"


def cluster_of(ctx: OpContext) -> Cluster:
    """The cluster object; every op but ``cluster.init`` needs one to exist."""
    clusters = ctx.store.list("cluster")
    if not clusters:
        raise PrerequisiteError("the cluster is not initialised: run 'herd cluster init'")
    return clusters[0]


def get_node(ctx: OpContext, name: str, field: str) -> Node:
    """The node called ``name``; a ValidationError on ``field`` lists the nodes there are."""
    node = ctx.store.find("node", name)
    if node is None:
        known = ", ".join(n.name for n in ctx.store.list("node")) or "none"
        raise ValidationError(field, name, f"an existing node: {known}")
    return node


def validate_group_ref(ctx: OpContext, name: str, field: str = "group") -> NodeGroup:
    """The node group called ``name``; a ValidationError on ``field`` lists the groups."""
    group = ctx.store.find("nodegroup", name)
    if group is None:
        known = ", ".join(g.name for g in ctx.store.list("nodegroup"))
        raise ValidationError(field, name, f"an existing node group: {known}")
    return group
