"""Cluster model and state store: what ops read and write, behind a backend-neutral API."""

from herd.config.model import (
    KINDS,
    Cluster,
    ConfigObject,
    Disk,
    Instance,
    Nic,
    Node,
    NodeGroup,
    TopObject,
    kind_class,
)
from herd.config.params import fill_params
from herd.config.store import (
    FORMAT,
    SQLiteStore,
    SQLiteTransaction,
    Store,
    Transaction,
    parse_dump,
)

__all__ = [
    "FORMAT",
    "KINDS",
    "Cluster",
    "ConfigObject",
    "Disk",
    "Instance",
    "Nic",
    "Node",
    "NodeGroup",
    "SQLiteStore",
    "SQLiteTransaction",
    "Store",
    "TopObject",
    "Transaction",
    "fill_params",
    "kind_class",
    "parse_dump",
]
