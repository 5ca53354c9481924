"""Importing this module registers every op; add each new op module here."""

from herd.ops import cluster, config_restore, debug, group, node  # noqa: F401
