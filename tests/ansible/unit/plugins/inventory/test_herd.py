"""The herd.cluster.herd inventory plugin against a fixed query result.

Host variables and built-in groups are pure functions of the master's answers and are
tested as such. What needs Ansible itself (the config file, compose, keyed groups, the
cache, env fallbacks) runs the real ``ansible-inventory`` against a stand-in master on a
Unix socket that answers the same fixed documents and records what it was asked.
"""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from ansible_collections.herd.cluster.plugins.inventory import herd as plugin
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import (
    CONNECTION_ARGSPEC,
    HerdApiError,
)

TOKEN = "herd_s3cret-token-value"
#: A token the stand-in master refuses, as a real one refuses an unknown token.
WRONG = "herd_wrong-token-value"
#: A secret a master that forgot to redact would send along.
DRBD_SECRET = "drbd-shared-secret-value"

CLUSTER = {"name": "alpha", "master_node": "n1", "tags": []}
NODES = [
    {"name": "n1", "uuid": "u-n1", "primary_ip": "192.0.2.1", "secondary_ip": "",
     "group_name": "default", "ssh_port": 22, "tags": [], "master_candidate": True,
     "drained": False, "offline": False, "vm_capable": True},
    {"name": "n2", "uuid": "u-n2", "primary_ip": "192.0.2.2", "secondary_ip": "198.51.100.2",
     "group_name": "rack-2", "ssh_port": 2222, "tags": ["ssd"], "master_candidate": False,
     "drained": True, "offline": False, "vm_capable": True},
]  # fmt: skip
INSTANCES = [
    {"name": "db1", "uuid": "u-db1", "os": "herd-image+blank", "hypervisor": "kvm",
     "disk_template": "drbd", "primary_node_name": "n1", "secondary_node_names": ["n2"],
     "admin_state": "down", "tags": [],
     "disks": [{"size_mib": 16, "template": "drbd", "params": {"secret": DRBD_SECRET}}],
     "nics": [{"name": "nic0", "uuid": "u-nic", "serial": 1, "mac": "aa:00:00:00:00:02",
               "ip": None, "mode": "bridged", "link": "br0"}]},
    {"name": "web1", "uuid": "u-web1", "os": "herd-image+tiny", "hypervisor": "fake",
     "disk_template": "file", "primary_node_name": "n2", "secondary_node_names": [],
     "admin_state": "up", "tags": ["web", "env:prod"],
     "nics": [{"name": "nic0", "mac": "aa:00:00:00:00:01", "ip": "10.0.0.5",
               "mode": "routed", "link": "herd0"},
              {"name": "nic1", "mac": "aa:00:00:00:00:03", "ip": "10.1.0.5",
               "mode": "bridged", "link": "br1"}]},
]  # fmt: skip
OPER_STATE = {"db1": "stopped", "web1": "running"}


# --- host variables and built-in groups -----------------------------------------------


def web1_vars(live: bool = False) -> dict[str, Any]:
    inst = dict(INSTANCES[1], **({"oper_state": "running"} if live else {}))
    return plugin.instance_vars(inst, "alpha", {"n1": "default", "n2": "rack-2"})


def test_instance_vars_carry_addresses_os_template_nodes_tags_and_state() -> None:
    assert web1_vars() == {
        "herd_kind": "instance",
        "herd_cluster": "alpha",
        "herd_uuid": "u-web1",
        "herd_os": "herd-image+tiny",
        "herd_hypervisor": "fake",
        "herd_disk_template": "file",
        "herd_primary_node": "n2",
        "herd_secondary_nodes": [],
        "herd_group": "rack-2",
        "herd_tags": ["web", "env:prod"],
        "herd_admin_state": "up",
        "herd_nics": [
            {
                "name": "nic0",
                "mac": "aa:00:00:00:00:01",
                "ip": "10.0.0.5",
                "mode": "routed",
                "link": "herd0",
            },
            {
                "name": "nic1",
                "mac": "aa:00:00:00:00:03",
                "ip": "10.1.0.5",
                "mode": "bridged",
                "link": "br1",
            },
        ],
        "herd_ips": ["10.0.0.5", "10.1.0.5"],
        "herd_macs": ["aa:00:00:00:00:01", "aa:00:00:00:00:03"],
    }
    assert web1_vars(live=True)["herd_oper_state"] == "running"


def test_instance_groups_name_cluster_group_primary_tags_and_states() -> None:
    assert plugin.instance_groups(web1_vars(live=True)) == [
        "herd_all_instances",
        "herd_cluster_alpha",
        "herd_state_up",
        "herd_group_rack-2",
        "herd_primary_n2",
        "herd_tag_web",
        "herd_tag_env:prod",
        "herd_oper_state_running",
    ]


def test_ansible_host_is_the_first_nic_ip_or_the_node_primary_ip() -> None:
    db1 = plugin.instance_vars(INSTANCES[0], "alpha", {})
    n2 = plugin.node_vars(NODES[1], CLUSTER)
    assert plugin.ansible_host(web1_vars()) == "10.0.0.5"
    assert plugin.ansible_host(db1) is None
    assert db1["herd_ips"] == [] and db1["herd_secondary_nodes"] == ["n2"]
    assert plugin.ansible_host(n2) == "192.0.2.2"


def test_node_vars_say_where_and_what_the_node_is() -> None:
    assert plugin.node_vars(NODES[0], CLUSTER) == {
        "herd_kind": "node",
        "herd_cluster": "alpha",
        "herd_uuid": "u-n1",
        "herd_primary_ip": "192.0.2.1",
        "herd_secondary_ip": None,
        "herd_ssh_port": 22,
        "herd_group": "default",
        "herd_tags": [],
        "herd_master": True,
        "herd_master_candidate": True,
        "herd_drained": False,
        "herd_offline": False,
        "herd_vm_capable": True,
    }
    n2 = plugin.node_vars(NODES[1], CLUSTER)
    assert n2["herd_master"] is False and n2["herd_drained"] is True
    assert n2["herd_secondary_ip"] == "198.51.100.2" and n2["herd_ssh_port"] == 2222


def test_only_config_files_named_for_the_plugin_are_taken(tmp_path: Path) -> None:
    module = plugin.InventoryModule()
    for name, taken in [("a.herd.yml", True), ("a.herd.yaml", True), ("herd.yml", False)]:
        (tmp_path / name).write_text("plugin: herd.cluster.herd\n")
        assert module.verify_file(str(tmp_path / name)) is taken, name


@pytest.mark.parametrize(
    ("given", "message", "field"),
    [
        ({"api_token": TOKEN, "api_user": "awx", "api_password": "pw"},
         "options api_token and api_user are mutually exclusive", "api_user"),
        ({"api_user": "awx"}, "option api_user needs api_password as well", "api_password"),
    ],
)  # fmt: skip
def test_connection_constraints_are_the_modules_and_name_the_options(
    given: dict[str, Any], message: str, field: str
) -> None:
    params = {name: None for name in CONNECTION_ARGSPEC} | given
    with pytest.raises(HerdApiError) as err:
        plugin.check_constraints(params)
    assert message in str(err.value) and err.value.details == {"field": field}
    assert TOKEN not in str(err.value) and "pw" not in str(err.value)


def test_env_value_reads_the_modules_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERD_API_URL", "https://m.example:5080")
    monkeypatch.delenv("HERD_API_TOKEN", raising=False)
    assert plugin.env_value(CONNECTION_ARGSPEC["api_url"]) == "https://m.example:5080"
    assert plugin.env_value(CONNECTION_ARGSPEC["api_token"]) is None
    assert plugin.env_value(CONNECTION_ARGSPEC["validate_certs"]) is None


# --- ansible-inventory against a stand-in master ----------------------------------------


class StandIn(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers the plugin's queries with the fixed documents; records every request."""

    daemon_threads = True

    def __init__(self, path: Path) -> None:
        self.requests: list[dict[str, Any]] = []
        self.instances = list(INSTANCES)
        super().__init__(str(path), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: StandIn

    def do_GET(self) -> None:
        target = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(target.query).items()}
        auth = self.headers.get("Authorization")
        self.server.requests.append({"path": target.path, "query": query, "auth": auth})
        if auth == f"Bearer {WRONG}":
            self._answer(401, {"error": {"type": "AuthenticationError", "message": "bad token"}})
        elif target.path == "/v1/query/cluster":
            self._answer(200, CLUSTER)
        elif target.path == "/v1/query/nodes":
            self._answer(200, {"items": NODES})
        elif target.path == "/v1/query/instances":
            live = query.get("live") == "1"
            items = [dict(i, **({"oper_state": OPER_STATE[i["name"]]} if live else {}))
                     for i in self.server.instances]  # fmt: skip
            self._answer(200, {"items": items})
        else:
            self._answer(404, {"error": {"type": "NotFoundError", "message": target.path}})

    def _answer(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads ``requests`` instead."""


@pytest.fixture
def master(tmp_path: Path) -> Iterator[StandIn]:
    server = StandIn(tmp_path / "master.sock")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def collections_path() -> Path:
    """The ansible_collections tree the plugin was imported from (the checkout's bridge in
    a plain pytest run, the installed collection under ansible-test units)."""
    return Path(plugin.__file__).parents[5]


def inventory(
    tmp_path: Path, config: dict[str, Any], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``ansible-inventory --list`` on ``config``, as a user runs it (no ansible.cfg)."""
    path = tmp_path / "alpha.herd.yml"
    path.write_text(yaml.safe_dump({"plugin": "herd.cluster.herd", **config}))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HERD_", "ANSIBLE_"))}
    run_env = {
        **clean,
        "ANSIBLE_COLLECTIONS_PATH": str(collections_path()),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "ansible.cli.inventory", "-i", str(path), "--list"]
    return subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=300)


def listed(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert run.returncode == 0, run.stderr
    return dict(json.loads(run.stdout, object_hook=trusted))


def trusted(obj: dict[str, Any]) -> Any:
    """The string inside ``{"__ansible_unsafe": ...}``: ansible-inventory marks the host
    variables it got from a plugin as not to be templated, which is right for what a
    master answers, and the tests compare the values."""
    return obj["__ansible_unsafe"] if set(obj) == {"__ansible_unsafe"} else obj


def hosts(data: dict[str, Any], group: str) -> list[str]:
    return sorted(data.get(group, {}).get("hosts", []))


def test_groups_hostvars_compose_and_keyed_groups(master: StandIn, tmp_path: Path) -> None:
    # An option the file sets wins over its environment variable.
    env = {"HERD_SOCKET": str(tmp_path / "no-such.sock")}
    config = {
        "socket": master.server_address,
        "api_token": TOKEN,
        "compose": {"web_port": "8080 if 'web' in herd_tags else 0"},
        "keyed_groups": [{"key": "herd_disk_template", "prefix": "template"}],
        "groups": {"replicated": "herd_disk_template == 'drbd'"},
    }
    run = inventory(tmp_path, config, env)
    data = listed(run)
    assert hosts(data, "herd_all_instances") == ["db1", "web1"]
    assert hosts(data, "herd_cluster_alpha") == ["db1", "web1"]
    assert hosts(data, "herd_group_default") == ["db1"]
    assert hosts(data, "herd_group_rack_2") == ["web1"]
    assert hosts(data, "herd_primary_n2") == ["web1"]
    assert hosts(data, "herd_tag_env_prod") == ["web1"]
    assert hosts(data, "herd_state_up") == ["web1"] and hosts(data, "herd_state_down") == ["db1"]
    assert hosts(data, "template_drbd") == ["db1"] and hosts(data, "template_file") == ["web1"]
    assert hosts(data, "replicated") == ["db1"]
    assert "herd_all_nodes" not in data and not any("oper_state" in g for g in data)
    web, db = data["_meta"]["hostvars"]["web1"], data["_meta"]["hostvars"]["db1"]
    assert web["web_port"] == 8080 and db["web_port"] == 0
    assert web["ansible_host"] == "10.0.0.5" and "ansible_host" not in db
    assert web["herd_os"] == "herd-image+tiny" and db["herd_secondary_nodes"] == ["n2"]
    assert TOKEN not in run.stdout + run.stderr
    assert {r["auth"] for r in master.requests} == {f"Bearer {TOKEN}"}
    assert not any(r["query"].get("live") for r in master.requests)


def test_nodes_live_state_and_env_fallbacks(master: StandIn, tmp_path: Path) -> None:
    config = {"want_nodes": True, "live": True, "set_ansible_host": False}
    env = {"HERD_SOCKET": master.server_address, "HERD_API_TOKEN": TOKEN}
    run = inventory(tmp_path, config, env)
    data = listed(run)
    assert hosts(data, "herd_all_nodes") == ["n1", "n2"]
    assert hosts(data, "herd_oper_state_running") == ["web1"]
    assert hosts(data, "herd_oper_state_stopped") == ["db1"]
    assert hosts(data, "herd_cluster_alpha") == ["db1", "web1"]
    hostvars = data["_meta"]["hostvars"]
    assert hostvars["n2"]["herd_ssh_port"] == 2222 and hostvars["n2"]["herd_group"] == "rack-2"
    assert (
        hostvars["n1"]["herd_master"] is True and hostvars["web1"]["herd_oper_state"] == "running"
    )
    assert not any("ansible_host" in v for v in hostvars.values())
    assert TOKEN not in run.stdout + run.stderr
    live = [r for r in master.requests if r["path"] == "/v1/query/instances"]
    assert [r["query"] for r in live] == [{"live": "1"}]
    assert {r["auth"] for r in master.requests} == {f"Bearer {TOKEN}"}


def test_a_node_named_like_an_instance_is_left_out_with_a_warning(
    master: StandIn, tmp_path: Path
) -> None:
    master.instances.append(dict(INSTANCES[0], name="n2", uuid="u-inst-n2"))
    run = inventory(tmp_path, {"socket": master.server_address, "want_nodes": True})
    data = listed(run)
    assert hosts(data, "herd_all_nodes") == ["n1"]
    assert hosts(data, "herd_all_instances") == ["db1", "n2", "web1"]
    assert data["_meta"]["hostvars"]["n2"]["herd_kind"] == "instance"
    assert "node n2 is left out: an instance has its name" in " ".join(run.stderr.split())


def test_a_cached_inventory_asks_the_master_nothing_and_holds_no_secret(
    master: StandIn, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    config = {
        "socket": master.server_address,
        "api_token": TOKEN,
        "cache": True,
        "cache_plugin": "ansible.builtin.jsonfile",
        "cache_connection": str(cache),
        "compose": {"role": "'web' if 'web' in herd_tags else 'db'"},
    }
    first = listed(inventory(tmp_path, config))
    asked = len(master.requests)
    assert asked == 3 and list(cache.iterdir())
    second = listed(inventory(tmp_path, config))
    assert len(master.requests) == asked and second == first
    assert first["_meta"]["hostvars"]["web1"]["role"] == "web"
    cached = " ".join(f.read_text() for f in cache.iterdir())
    assert "u-db1" in cached and TOKEN not in cached and DRBD_SECRET not in cached


def test_a_refused_token_fails_naming_the_error_not_the_token(
    master: StandIn, tmp_path: Path
) -> None:
    run = inventory(tmp_path, {"socket": master.server_address, "api_token": WRONG})
    assert run.returncode != 0
    assert "AuthenticationError: bad token" in run.stderr
    assert WRONG not in run.stdout + run.stderr


def test_conflicting_credentials_fail_before_any_request(master: StandIn, tmp_path: Path) -> None:
    config = {"socket": master.server_address, "api_user": "awx", "api_password": "pw"}
    run = inventory(tmp_path, config, {"HERD_API_TOKEN": TOKEN})
    assert run.returncode != 0
    assert "options api_token and api_user are mutually exclusive" in run.stderr
    assert TOKEN not in run.stdout + run.stderr and not master.requests
