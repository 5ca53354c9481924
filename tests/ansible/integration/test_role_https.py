"""The master role turning the HTTPS API on and off, and handing out API tokens.

site.yml runs against lab nodes with the master as a daemon on this host (as in
test_playbooks); the test then dials the HTTPS API itself with the CA and a token the role
wrote on the controller, and reads the master's process and credentials directly, so
"restarted", "changed nothing" and "secret shown nowhere" are checked, not taken from
Ansible's word.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from herd.client import Client
from herd.errors import MasterUnreachableError
from tests.ansible.integration.runner import REPO, Run, local_host, play
from tests.ansible.integration.test_playbooks import _master_pids, site_inventory, site_lab

SITE = REPO / "playbooks" / "site.yml"
#: The check-mode legs (each a whole site.yml run) only with HERD_PLAYBOOKS_ALL=1: CI runs
#: the real enable, rerun and disable; site.yml's check mode on a healthy cluster has its
#: own test in test_playbooks.py.
ALL_LEGS = os.environ.get("HERD_PLAYBOOKS_ALL") == "1"
TOKENS = [{"name": "awx"}, {"name": "facts", "read_only": True}]

__all__ = ["site_lab"]  # the fixture, shared with test_playbooks


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def https_inventory(lab: Any, creds: Path, https: bool, bind: str) -> dict[str, Any]:
    inventory = site_inventory(lab)
    controller = inventory["all"]["children"]["herd_masters"]["hosts"]["controller"]
    controller |= {
        "herd_master_https": https,
        "herd_master_https_bind": bind,
        "herd_master_api_tokens": TOKENS,
        "herd_master_api_credentials_dir": str(creds),
    }
    return inventory


def files_holding(root: Path, secret: str) -> list[Path]:
    """Files under ``root`` (a run's artifacts: stdout, every event) that hold ``secret``."""
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_text(errors="replace")]


def https_client(port: int, token: str, ca: Path) -> Client:
    return Client(api_url=f"https://127.0.0.1:{port}", token=token, ca_file=str(ca))


@pytest.mark.lab
def test_role_enables_https_with_tokens_then_changes_nothing_then_disables_it(
    collections: Path, site_lab: tuple[Any, Path, Path], tmp_path: Path
) -> None:
    lab, state_dir, sock = site_lab
    port, creds = free_port(), tmp_path / "creds"
    on = https_inventory(lab, creds, True, f"127.0.0.1:{port}")

    first = play(collections, tmp_path / "on1", on, SITE)
    assert first.rc == 0 and first.failed() == 0, first.failed_tasks
    (pid,) = _master_pids(state_dir)
    assert stat.S_IMODE(creds.stat().st_mode) == 0o700
    token = (creds / "awx.token").read_text().strip()
    for name in ("awx", "facts"):
        assert stat.S_IMODE((creds / f"{name}.token").stat().st_mode) == 0o600
    assert not files_holding(tmp_path / "on1", token)
    with https_client(port, token, creds / "ca.pem") as client:
        assert client.info()["cluster"] == "beta"
    with Client(str(sock)) as local:
        assert {t["name"]: t["read_only"] for t in local.credentials("tokens")} == {
            "awx": False,
            "facts": True,
        }

    second = play(collections, tmp_path / "on2", on, SITE)
    assert second.rc == 0 and second.changed() == 0, second.stats
    if ALL_LEGS:
        checked = play(collections, tmp_path / "on3", on, SITE, cmdline="--check --diff")
        assert checked.rc == 0 and checked.failed() == 0 and checked.changed() == 0, checked.stats
    assert _master_pids(state_dir) == [pid]
    assert (creds / "awx.token").read_text().strip() == token

    off = https_inventory(lab, creds, False, f"127.0.0.1:{port}")
    if ALL_LEGS:
        preview = play(collections, tmp_path / "off0", off, SITE, cmdline="--check --diff")
        assert preview.rc == 0 and preview.failed() == 0, preview.failed_tasks
        diff = preview.result("Record the options the master runs with")["diff"][0]
        assert "--https-bind" in diff["before"] and "--https-bind" not in diff["after"]
        assert _master_pids(state_dir) == [pid]

    disabled = play(collections, tmp_path / "off1", off, SITE)
    assert disabled.rc == 0 and disabled.failed() == 0, disabled.failed_tasks
    assert len(_master_pids(state_dir)) == 1 and _master_pids(state_dir) != [pid]
    with pytest.raises(MasterUnreachableError), https_client(port, token, creds / "ca.pem") as c:
        c.info()


@pytest.mark.parametrize("bind", ["5080", "master:http", "[::1:5080", "0.0.0.0:65536"])
def test_a_bad_https_bind_fails_naming_the_variable(
    collections: Path, tmp_path: Path, bind: str
) -> None:
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  roles: [herd.cluster.master]\n"
    )
    inventory = {"all": {"hosts": {"localhost": local_host()}}}
    extravars = {
        "herd_cluster_name": "beta",
        "herd_master_https": True,
        "herd_master_https_bind": bind,
    }
    run: Run = play(collections, tmp_path / "run", inventory, playbook, extravars)
    assert run.failed_tasks == ["Check the HTTPS address"]
    msg = run.result("Check the HTTPS address")["msg"]
    assert f"invalid value '{bind}' for herd_master_https_bind" in msg
    assert "HOST:PORT" in msg
