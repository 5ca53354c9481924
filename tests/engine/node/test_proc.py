"""Processes and ports of this node as the inventory listers see them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from herd.node import proc


def test_own_processes_include_a_child_with_its_argv() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "marker-1"])
    try:
        found = dict(proc.own_processes())
        assert found[child.pid][-1] == "marker-1"
    finally:
        child.kill()
        child.wait()


def test_python_module_and_arg_value_read_command_lines() -> None:
    argv = ["/usr/bin/python3", "-m", "herd.node.hv.fake_guest", "--name", "web1", "--"]
    assert proc.python_module(argv) == "herd.node.hv.fake_guest"
    assert proc.python_module(["/usr/bin/python3", "script.py", "-m", "x"]) is None
    assert proc.arg_value(argv, "--name") == "web1"
    assert proc.arg_value(argv, "--") is None
    assert proc.arg_value(argv, "--status") is None


def test_local_ports_count_listening_and_connected_sockets_only(tmp_path: Path) -> None:
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\n"
    tcp = tmp_path / "tcp"
    tcp.write_text(
        header
        + "   0: 00000000:2AF8 00000000:0000 0A 00000000:00000000 00:00000000 00000000\n"
        + "   1: 0100007F:2AF9 0100007F:9C40 01 00000000:00000000 00:00000000 00000000\n"
        + "   2: 0100007F:2AFA 0100007F:9C41 06 00000000:00000000 00:00000000 00000000\n"
    )
    tcp6 = tmp_path / "tcp6"
    tcp6.write_text(
        header + "   0: 00000000000000000000000000000000:2B00 "
        "00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000\n"
    )
    assert proc.local_ports((tcp, tcp6, tmp_path / "missing")) == {11000, 11001, 11008}
