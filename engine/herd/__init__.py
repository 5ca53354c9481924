"""Herd: a Ganeti-style cluster manager for KVM hosts with DRBD-replicated disks."""

__version__ = "0.1.0"
