"""Importing this module registers every op; add each new op module here."""

from herd.ops import (  # noqa: F401
    cluster,
    config_restore,
    debug,
    export,
    group,
    instance_add,
    instance_export,
    instance_import,
    instance_lifecycle,
    instance_migrate,
    instance_modify,
    instance_move,
    instance_receive,
    instance_replace_disks,
    node,
    node_evacuate,
)
