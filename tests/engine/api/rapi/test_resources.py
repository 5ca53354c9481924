"""RAPI v2 against a real master: Ganeti's own Python client and curl, as users run them."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from herd.api.context import ApiContext, Request
from herd.api.rapi import resources
from herd.api.rapi.resources import NOT_FOUND
from herd.api.server import LOCAL
from herd.auth.ratelimit import MAX_FAILURES
from herd.cli.main import main as herd_main
from herd.client import https_client_context
from herd.config import Node, SQLiteStore
from herd.errors import HerdError, ValidationError
from herd.master import daemon
from herd.master.daemon import Master
from tests.engine.api.https_master import start_https_master
from tests.engine.api.rapi.rapi_master import USERS, RapiMaster, start_rapi_master

SYSTEM_PYTHON = "/usr/bin/python3"
GANETI_CLIENT = Path(__file__).with_name("ganeti_client.py")
PATIENCE = 60


def _has_ganeti_client() -> bool:
    probe = [SYSTEM_PYTHON, "-c", "import ganeti.rapi.client"]
    return Path(SYSTEM_PYTHON).exists() and subprocess.run(probe, check=False).returncode == 0


needs_ganeti = pytest.mark.skipif(
    not _has_ganeti_client(), reason="python3-ganeti-rapi not installed (scripts/setup.sh)"
)
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")


@pytest.fixture(scope="module")
def rapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RapiMaster]:
    started = start_rapi_master(tmp_path_factory.mktemp("rapi"))
    yield started
    started.running.stop()


def ganeti(rapi: RapiMaster, calls: list[list[Any]], user: str = "admin") -> list[Any]:
    """What Ganeti's GanetiRapiClient answers to each ``[method, args, kwargs]``."""
    cmd = [SYSTEM_PYTHON, str(GANETI_CLIENT), str(rapi.port), str(rapi.ca_file), user]
    out = subprocess.run(
        [*cmd, USERS[user][0], json.dumps(calls)],
        capture_output=True,
        text=True,
        check=True,
        timeout=PATIENCE,
    )
    return list(json.loads(out.stdout))


def curl(rapi: RapiMaster, method: str, path: str, *auth: str) -> tuple[int, Any]:
    """``curl --cacert CA -u user:pw -X METHOD https://127.0.0.1:PORT/PATH``: status, body."""
    cmd = ["curl", "-sS", "--cacert", str(rapi.ca_file), "-X", method, "-w", "\n%{http_code}"]
    out = subprocess.run(
        [*cmd, *auth, f"https://127.0.0.1:{rapi.port}{path}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=PATIENCE,
    ).stdout
    body, _, status = out.rpartition("\n")
    return int(status), json.loads(body)


@needs_ganeti
def test_ganetis_client_reads_the_cluster(rapi: RapiMaster) -> None:
    (version, info, features, bulk, names, web1, nodes, n3, groups, group_names) = ganeti(
        rapi,
        [
            ["GetVersion", [], {}],
            ["GetInfo", [], {}],
            ["GetFeatures", [], {}],
            ["GetInstances", [], {"bulk": True}],
            ["GetInstances", [], {}],
            ["GetInstance", ["web1"], {}],
            ["GetNodes", [], {"bulk": True}],
            ["GetNode", ["n3"], {}],
            ["GetGroups", [], {"bulk": True}],
            ["GetGroups", [], {}],
        ],
    )
    assert version == 2 and features == []
    assert (info["name"], info["master"]) == ("alpha", "m1")
    assert names == ["web1"] and [i["name"] for i in bulk] == ["web1"]
    assert (web1["pnode"], web1["snodes"], web1["disk.sizes"]) == ("n3", [], [1024])
    assert (web1["admin_state"], web1["oper_state"], web1["status"]) == (
        "up",
        None,
        "ERROR_nodeoffline",
    )
    assert web1["nic.macs"] == ["aa:00:00:00:00:01"]
    assert {n["name"]: n["role"] for n in nodes} == {"m1": "M", "n2": "R", "n3": "O"}
    assert (n3["pinst_cnt"], n3["pinst_list"], n3["offline"]) == (1, ["web1"], True)
    assert group_names == ["default"] and groups[0]["node_cnt"] == 3


@needs_ganeti
def test_ganetis_client_follows_and_cancels_jobs_submitted_over_v1(rapi: RapiMaster) -> None:
    api = rapi.running.client()
    holder = api.submit([{"op": "debug.delay", "duration": 600, "lock_nodes": ["m1"]}])
    rapi.running.wait_status(holder, "running")
    blocked = api.submit([{"op": "debug.delay", "lock_nodes": ["m1"]}])
    rapi.running.wait_status(blocked, "waiting")
    quick = api.submit([{"op": "debug.delay", "log_messages": 2}])
    rapi.running.wait_status(quick, "success")
    status, done, change, cancel_blocked, cancel_running, blocked_after, job_ids = ganeti(
        rapi,
        [
            ["GetJobStatus", [quick], {}],
            ["WaitForJobCompletion", [quick], {"period": 0}],
            ["WaitForJobChange", [quick, ["status", "opstatus"], None, 0], {}],
            ["CancelJob", [blocked], {}],
            ["CancelJob", [holder], {}],
            ["GetJobStatus", [blocked], {}],
            ["GetJobs", [], {}],
        ],
    )
    assert (status["id"], status["status"], status["opstatus"]) == (quick, "success", ["success"])
    assert status["summary"] == ["debug.delay"] and status["ops"][0]["OP_ID"] == "debug.delay"
    assert [e[3] for e in status["oplog"][0] if e[3].startswith("delay step")] == [
        "delay step 1/2",
        "delay step 2/2",
    ]
    assert status["received_ts"][0] <= status["end_ts"][0]
    assert done is True
    assert change["job_info"] == ["success", ["success"]] and change["log_entries"]
    assert cancel_blocked[0] is True and blocked_after["status"] == "canceled"
    assert cancel_running[0] is False and "running" in cancel_running[1]
    assert {quick, blocked, holder} <= set(job_ids)


@needs_ganeti
def test_writes_are_herd_ops_answered_with_a_bare_job_id(rapi: RapiMaster) -> None:
    startup, dry_run, shutdown, reboot, unknown = ganeti(
        rapi,
        [
            ["StartupInstance", ["web1"], {"reason": "maintenance window"}],
            ["StartupInstance", ["web1"], {"dry_run": True}],
            ["ShutdownInstance", ["web1"], {"timeout": 5}],
            ["RebootInstance", ["web1"], {}],
            ["GetInstance", ["nope"], {}],
        ],
    )
    # Ganeti's client names no type unless asked, and Ganeti then reboots hard.
    assert rapi.running.api.job(reboot)["ops"][0]["params"]["type"] == "hard"
    assert isinstance(startup, int) and isinstance(shutdown, int)
    job = rapi.running.api.job(startup)
    assert job["ops"][0]["op"] == "instance.start" and job["ops"][0]["params"]["name"] == "web1"
    assert job["reason"][0][:2] == ["rapi:reason", "maintenance window"]
    assert "rapi user admin" in job["reason"][-1][1]
    assert rapi.running.api.job(shutdown)["ops"][0]["params"]["shutdown_timeout"] == 5
    assert dry_run["error"][0] == 400 and "dry-run" in dry_run["error"][1]
    assert unknown["error"][0] == 404 and "nope" in unknown["error"][1]


@needs_ganeti
def test_a_read_user_may_not_write(rapi: RapiMaster) -> None:
    (refused,) = ganeti(rapi, [["StartupInstance", ["web1"], {}]], user="viewer")
    assert refused["error"][0] == 403 and "read-only" in refused["error"][1]


@needs_curl
def test_curl_with_basic_auth_and_a_token(rapi: RapiMaster) -> None:
    status, info = curl(rapi, "GET", "/2/info", "-u", "viewer:look")
    assert (status, info["name"]) == (200, "alpha")
    token = rapi.running.api.create_token("rapi-tool")
    status, names = curl(rapi, "GET", "/2/nodes", "-H", f"Authorization: Bearer {token}")
    assert (status, names[0]) == (200, {"id": "m1", "uri": "/2/nodes/m1"})


@needs_curl
@pytest.mark.parametrize(
    ("method", "path", "auth", "code", "explain"),
    [
        ("GET", "/2/info", ("-u", "admin:wrong"), 401, "invalid credentials"),
        ("GET", "/2/info", (), 401, "authentication required"),
        ("GET", "/2/nothing-here", ("-u", "viewer:look"), 404, NOT_FOUND),
        ("PUT", "/2/instances/web1/startup", ("-u", "viewer:look"), 403, "read-only"),
        ("POST", "/2/instances/web1/reboot?type=full", ("-u", "admin:s3cret"), 400, "full"),
    ],
)
def test_errors_have_ganetis_codes_and_body(
    rapi: RapiMaster, method: str, path: str, auth: tuple[str, ...], code: int, explain: str
) -> None:
    status, body = curl(rapi, method, path, *auth)
    assert (status, set(body), body["code"]) == (code, {"code", "message", "explain"}, code)
    assert explain in body["explain"]
    if code == 404:
        assert body == {"code": 404, "message": "Not Found", "explain": NOT_FOUND}


def basic_get(rapi: RapiMaster, path: str, user: str, password: str, source: str) -> int:
    """The status of one Basic-auth GET sent from ``source`` (any 127/8 address)."""
    conn = http.client.HTTPSConnection(
        "127.0.0.1",
        rapi.port,
        timeout=PATIENCE,
        context=https_client_context(str(rapi.ca_file)),
        source_address=(source, 0),
    )
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        conn.request("GET", path, headers={"Authorization": f"Basic {pair}"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_failed_logins_are_rate_limited_as_on_v1(rapi: RapiMaster) -> None:
    source = "127.0.0.9"  # its own address: the other tests' logins are not limited
    for _ in range(MAX_FAILURES):
        assert basic_get(rapi, "/2/info", "admin", "guess", source) == 401
    assert basic_get(rapi, "/2/info", "admin", "s3cret", source) == 429
    assert basic_get(rapi, "/2/info", "admin", "s3cret", "127.0.0.10") == 200
    # One budget per address for both listeners: each takes Herd's tokens.
    assert rapi.running.master.rapi is not None
    assert rapi.running.master.rapi.limiter is rapi.running.master.login_failures


def test_rapi_is_off_unless_bound_and_a_bad_bind_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        Master(tmp_path / "state", tmp_path / "sock", rapi_bind="no-port")
    assert err.value.details["field"] == "rapi_bind"
    https_only = start_https_master(tmp_path / "https-only")
    try:
        assert https_only.running.master.https is not None
        assert https_only.running.master.rapi is None
    finally:
        https_only.running.stop()


class OSNodes:
    """Node services answering ``os_list`` per node name, or failing for ``down``."""

    def __init__(self, listed: dict[str, list[dict[str, Any]]], down: str = "") -> None:
        self.listed, self.down = listed, down

    def call(self, node: Node, action: str, args: Any, timeout: float) -> dict[str, Any]:
        assert action == "os_list"
        if node.name == self.down:
            raise HerdError(f"{node.name}: unreachable")
        return {"os": self.listed[node.name]}


REQUEST = Request({}, None, LOCAL)


def os_context(tmp_path: Path, services: OSNodes) -> ApiContext:
    store = SQLiteStore(tmp_path / "config.db")
    with store.transaction() as txn:
        for name, offline in (("a", False), ("b", False), ("gone", True)):
            txn.add(Node(name=name, primary_ip="192.0.2.9", offline=offline))
    return ApiContext(store, None, None, None, services)  # type: ignore[arg-type]


def definition(name: str, variants: list[str], valid: bool = True) -> dict[str, Any]:
    return {"name": name, "variants": variants, "valid": valid}


def test_os_lists_what_every_online_node_can_install(tmp_path: Path) -> None:
    listed = {
        "a": [definition("debootstrap", ["bookworm", "trixie"]), definition("noop", [])],
        "b": [definition("debootstrap", ["bookworm"]), definition("noop", [], valid=False)],
    }
    ctx = os_context(tmp_path, OSNodes(listed))
    try:
        assert resources.operating_systems(ctx, REQUEST) == ["debootstrap+bookworm"]
        with pytest.raises(HerdError, match="b: unreachable"):
            resources.operating_systems(replace(ctx, services=OSNodes(listed, "b")), REQUEST)
    finally:
        ctx.store.close()


@pytest.mark.parametrize(
    ("argv", "env", "bound"),
    [
        (["--rapi-bind", "127.0.0.1:5080"], {}, "127.0.0.1:5080"),
        ([], {"HERD_RAPI_BIND": "0.0.0.0:5080"}, "0.0.0.0:5080"),
        ([], {}, None),
    ],
)
def test_herd_master_passes_the_rapi_bind_from_option_or_env(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], bound: str | None
) -> None:
    seen: dict[str, Any] = {}

    class Recorder:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.update(kwargs)

        def serve(self) -> None:
            """Returns at once: only the arguments matter here."""

    monkeypatch.delenv("HERD_RAPI_BIND", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(daemon, "Master", Recorder)
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    assert herd_main(["--socket", "/nonexistent/sock", "master", *argv]) == 0
    assert seen["rapi_bind"] == bound
