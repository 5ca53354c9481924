"""System facts: meminfo parsing and the node_info report."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from herd.errors import NodeError
from herd.node.actions.registry import NodeContext
from herd.node.actions.system import node_info, ping, read_meminfo


def test_read_meminfo_parses_kib_fields(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  2048000 kB\nMemFree: 100 kB\nMemAvailable: 1024000 kB\n")
    assert read_meminfo(meminfo) == {"MemTotal": 2048000, "MemFree": 100, "MemAvailable": 1024000}


def test_read_meminfo_without_total_is_a_node_error(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemFree: 100 kB\n")
    with pytest.raises(NodeError):
        read_meminfo(meminfo)


def test_node_info_reports_real_capacity(tmp_path: Path) -> None:
    info = node_info(NodeContext(tmp_path))
    assert info["changed"] is False
    assert info["memory_total_mib"] >= info["memory_free_mib"] > 0
    assert info["disk_total_mib"] >= info["disk_free_mib"] >= 0
    assert info["cpus"] >= 1 and info["storage_dir"] == str(tmp_path)


def test_node_info_on_missing_storage_is_a_node_error(tmp_path: Path) -> None:
    with pytest.raises(NodeError) as err:
        node_info(NodeContext(tmp_path / "absent"))
    assert err.value.details["path"] == str(tmp_path / "absent")


def test_ping_names_the_host(tmp_path: Path) -> None:
    assert ping(NodeContext(tmp_path))["hostname"] == socket.gethostname()
