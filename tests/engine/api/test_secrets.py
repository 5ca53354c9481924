"""No reader finds a secret (issue 10, hole 3).

A cluster is given known secrets (three domain secrets over its life: set by
``cluster.modify``, changed by it again, swapped in by ``config.restore``; two DRBD disk
secrets), then every way of reading it is crawled: every GET endpoint of the route table
(walked, so a new endpoint is crawled the day it is added) for every job, over HTTPS with a
read-only token and over the root socket, the CLI's outputs, and the job database on disk.
None may hold any of the secret values; the only exception is the dump root asks for
explicitly (``secrets=1``), which must hold them, because a restore needs it.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from herd.api.server import Route
from herd.cli.main import main as herd_main
from herd.client import Client
from herd.config import Disk, Instance
from herd.errors import ForbiddenError, HerdError, ValidationError
from herd.redact import REDACTED
from tests.engine.api.https_master import MASTER_NODE, HTTPSMaster, start_https_master
from tests.engine.harness import PATIENCE, start_thread_master

DOMAIN_SECRETS = ("a1" * 32, "b2" * 32, "c3" * 32)
DRBD_SECRETS = ("drbd-known-secret-one", "drbd-known-secret-two")
#: Key material no one declared secret, quoted in an error: found by its armour alone.
KEY_BODY = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"
KEY_FILE = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_BODY}\n-----END OPENSSH PRIVATE KEY-----\n"
SECRETS = (*DOMAIN_SECRETS, *DRBD_SECRETS, KEY_BODY)

#: A value for every query parameter a GET route takes, so each is crawled with it set.
#: A route with a parameter missing here fails the crawl: teach it the new parameter.
QUERY_VALUES = {
    "status": "success",
    "limit": "1000",
    "log_since": "0",
    "timeout": "0",
    "names": "",
    "live": "0",
    "secrets": "1",
    "op": "cluster.modify",
    "name": "c1",
}
_ALTERNATIVES = re.compile(r"\(([a-z|]+)\)")


@dataclass
class Cluster:
    https: HTTPSMaster
    root: Client
    reader: Client
    job_ids: list[int]


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def drbd_instance(store: Any, secret: str) -> None:
    """A DRBD instance as instance.add records it, written straight into the store: the
    secret only has to be in the config for this test, not on a real DRBD device."""
    nodes = {n.name: n.uuid for n in store.list("node")}
    disk = Disk(
        name="disk0",
        size_mib=128,
        template="drbd",
        params={"port": 11000, "minors": {MASTER_NODE: 0, "n2": 0}, "secret": secret},
        nodes=[nodes[MASTER_NODE], nodes["n2"]],
    )
    inst = Instance(
        name="db1",
        primary_node=nodes[MASTER_NODE],
        secondary_nodes=[nodes["n2"]],
        os="debootstrap",
        disk_template="drbd",
        disks=[disk],
    )
    with store.transaction() as txn:
        txn.add(inst)


def with_secrets(dump: dict[str, Any], domain: str, drbd: str) -> dict[str, Any]:
    data = json.loads(json.dumps(dump))
    (cluster,) = data["objects"]["cluster"]
    cluster["domain_secret"] = domain
    for inst in data["objects"]["instance"]:
        inst["disks"][0]["params"]["secret"] = drbd
    return data


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    https = start_https_master(tmp_path)
    root = https.running.api
    ids = [root.submit([{"op": "cluster.modify", "domain_secret": DOMAIN_SECRETS[0]}])]
    root.wait(ids[-1], PATIENCE)
    drbd_instance(https.running.master.store, DRBD_SECRETS[0])
    ids.append(root.submit([{"op": "cluster.modify", "domain_secret": DOMAIN_SECRETS[1]}]))
    root.wait(ids[-1], PATIENCE)
    full = root.dump(with_secrets=True)
    restored = with_secrets(full, DOMAIN_SECRETS[2], DRBD_SECRETS[1])
    ids.append(root.submit([{"op": "config.restore", "data": restored}]))
    root.wait(ids[-1], PATIENCE)
    # A restore that fails, its error quoting a secret value it found in the wrong place.
    broken = with_secrets(full, DOMAIN_SECRETS[2], DRBD_SECRETS[1])
    broken["objects"]["cluster"][0]["tags"] = DOMAIN_SECRETS[2]
    ids.append(root.submit([{"op": "config.restore", "data": broken}]))
    root.wait(ids[-1], PATIENCE)
    broken["objects"]["cluster"][0]["tags"] = KEY_FILE
    ids.append(root.submit([{"op": "config.restore", "data": broken}]))
    root.wait(ids[-1], PATIENCE)
    token = root.create_token("reader", read_only=True)
    yield Cluster(https, root, https.client(token=token), ids)
    https.running.stop()


def get_requests(routes: tuple[Route, ...], job_ids: list[int]) -> list[tuple[str, dict[str, str]]]:
    """Every GET path of the route table with its groups filled in, once bare and once
    with each of its query parameters set."""
    out = []
    for route in routes:
        if route.method != "GET":
            continue
        for path in expand(route.pattern.pattern.removeprefix("^").removesuffix("$"), job_ids):
            out.append((path, {}))
            for key in route.query:
                assert key in QUERY_VALUES, f"crawl: no value for query parameter {key!r}"
                out.append((path, {key: QUERY_VALUES[key]}))
    return out


def expand(pattern: str, job_ids: list[int]) -> list[str]:
    if r"(\d+)" in pattern:
        return [p for j in job_ids for p in expand(pattern.replace(r"(\d+)", str(j), 1), job_ids)]
    found = _ALTERNATIVES.search(pattern)
    if found:
        head, tail = pattern[: found.start()], pattern[found.end() :]
        return [p for alt in found.group(1).split("|") for p in expand(head + alt + tail, job_ids)]
    assert "(" not in pattern and "\\" not in pattern, f"crawl: cannot fill in {pattern!r}"
    return [pattern]


def answer(client: Client, path: str, query: dict[str, str]) -> str:
    """What the caller gets: the answer, or the error the API sent instead."""
    try:
        return json.dumps(client.request("GET", path, query=query or None))
    except HerdError as exc:
        return json.dumps(exc.to_dict())


def test_the_setup_really_holds_the_secrets(cluster: Cluster) -> None:
    """Guard against a vacuous crawl: the values are in the state and the ops used them."""
    store = cluster.https.running.master.store
    assert store.list("cluster")[0].domain_secret == DOMAIN_SECRETS[2]
    assert store.list("instance")[0].disks[0].params["secret"] == DRBD_SECRETS[1]
    statuses = [cluster.root.job(j)["status"] for j in cluster.job_ids]
    assert statuses == ["success", "success", "success", "error", "error"]


def test_no_get_endpoint_shows_a_secret_to_a_read_only_token(cluster: Cluster) -> None:
    requests = get_requests(cluster.https.running.master.router.routes, cluster.job_ids)
    assert len(requests) > 20
    for path, query in requests:
        text = answer(cluster.reader, path, query)
        assert not leaks(text), (path, query, leaks(text))


def test_no_get_endpoint_shows_a_secret_to_root_unless_asked(cluster: Cluster) -> None:
    for path, query in get_requests(cluster.https.running.master.router.routes, cluster.job_ids):
        text = answer(cluster.root, path, query)
        if (path, query) == ("/v1/config", {"secrets": "1"}):
            assert DOMAIN_SECRETS[2] in text and DRBD_SECRETS[1] in text
        else:
            assert not leaks(text), (path, query, leaks(text))


def test_jobs_show_where_secrets_were(cluster: Cluster) -> None:
    first, second, restore, failed, keyed = (cluster.reader.job(j) for j in cluster.job_ids)
    assert first["ops"][0]["params"]["domain_secret"] == REDACTED
    assert second["ops"][0]["result"]["changes"]["domain_secret"] == {
        "before": REDACTED,
        "after": REDACTED,
    }
    assert restore["ops"][0]["params"]["data"] == REDACTED
    assert failed["error"]["details"]["field"] == "cluster[alpha].tags"
    assert failed["error"]["details"]["value"] == REDACTED
    assert REDACTED in failed["error"]["message"]
    assert keyed["error"]["details"]["value"] == (
        f"-----BEGIN OPENSSH PRIVATE KEY-----{REDACTED}-----END OPENSSH PRIVATE KEY-----\n"
    )
    (inst,) = cluster.reader.query("instances")
    assert inst["disks"][0]["params"]["secret"] == REDACTED
    assert cluster.reader.query("cluster")["domain_secret"] == REDACTED


def test_the_dump_is_redacted_unless_root_asks_and_only_root_may(cluster: Cluster) -> None:
    dump = cluster.root.dump()
    assert dump["objects"]["cluster"][0]["domain_secret"] == REDACTED
    with pytest.raises(ForbiddenError):
        cluster.reader.dump(with_secrets=True)
    with pytest.raises(ValidationError) as err:
        cluster.root.request("GET", "/v1/config", query={"secrets": "yes"})
    assert err.value.details["field"] == "secrets"


def test_a_redacted_dump_is_refused_by_restore_naming_the_field(cluster: Cluster) -> None:
    before = cluster.root.dump(with_secrets=True)
    with pytest.raises(ValidationError) as err:
        cluster.root.run([{"op": "config.restore", "data": cluster.root.dump()}])
    assert err.value.details["field"] == "cluster[alpha].domain_secret"
    assert "--with-secrets" in err.value.details["allowed"]
    assert cluster.root.dump(with_secrets=True) == before


def test_the_job_database_holds_no_secret_once_the_jobs_ended(cluster: Cluster) -> None:
    state = cluster.https.running.state_dir
    with contextlib.closing(sqlite3.connect(state / "jobs.db")) as db:
        assert db.execute("SELECT COUNT(*) FROM job_secrets").fetchone() == (0,)
        for table in ("jobs", "job_log"):
            for row in db.execute(f"SELECT * FROM {table}"):
                assert not leaks(json.dumps(row, default=str)), (table, row)


def test_no_file_of_the_job_database_holds_a_secret_once_the_jobs_ended(
    cluster: Cluster,
) -> None:
    """Found in review: deleted rows stayed readable in jobs.db-wal (and in free pages)."""
    state = cluster.https.running.state_dir
    for path in sorted(state.glob("jobs.db*")):
        assert not leaks(path.read_bytes().decode("latin-1")), path.name


def herd_cli(socket: Path, *argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = herd_main(["--socket", str(socket), *argv])
    assert code == 0, err.getvalue()
    return out.getvalue() + err.getvalue()


def test_no_cli_output_shows_a_secret(cluster: Cluster) -> None:
    socket = cluster.https.running.socket
    commands = [
        ["job", "list"],
        ["cluster", "info"],
        ["config", "dump"],
        ["queue", "info"],
        ["lock", "list"],
        *([noun, verb] for noun in ("group", "node", "instance") for verb in ("list", "info")),
        *(["job", "info", str(j)] for j in cluster.job_ids),
    ]
    for command in commands:
        for output in ("json", "table"):
            text = herd_cli(socket, "--output", output, *command)
            assert not leaks(text), (output, command, leaks(text))


def test_a_job_queued_across_a_restart_keeps_its_secret_out_of_sight(tmp_path: Path) -> None:
    """The secret is not in the stored job, yet the job still has it after a restart."""
    https = start_https_master(tmp_path)
    root = https.running.api
    root.set_queue(1)
    running = https.running
    store = running.master.store
    master_node = store.find("node", MASTER_NODE)
    running.master.locks.acquire("test-holder", "node", [master_node.uuid])
    blocker = root.submit([{"op": "debug.delay", "lock_nodes": [MASTER_NODE]}])
    running.wait_status(blocker, "waiting")
    queued = root.submit([{"op": "cluster.modify", "domain_secret": DOMAIN_SECRETS[0]}])
    assert root.job(queued)["ops"][0]["params"]["domain_secret"] == REDACTED
    with contextlib.closing(sqlite3.connect(running.state_dir / "jobs.db")) as db:
        (doc,) = db.execute("SELECT doc FROM jobs WHERE id = ?", (queued,)).fetchone()
        (kept,) = db.execute("SELECT doc FROM job_secrets WHERE job_id = ?", (queued,)).fetchone()
    assert DOMAIN_SECRETS[0] not in doc and DOMAIN_SECRETS[0] in kept
    running.stop()
    again = start_thread_master(tmp_path)
    try:
        done = again.wait_status(queued, "success", "error")
        assert done["status"] == "success", done["error"]
        assert again.master.store.list("cluster")[0].domain_secret == DOMAIN_SECRETS[0]
        assert done["ops"][0]["params"]["domain_secret"] == REDACTED
    finally:
        again.stop()
    with contextlib.closing(sqlite3.connect(running.state_dir / "jobs.db")) as db:
        assert db.execute("SELECT COUNT(*) FROM job_secrets").fetchone() == (0,)


def test_the_cli_dumps_secrets_only_when_asked_and_that_dump_restores(
    cluster: Cluster, tmp_path: Path
) -> None:
    socket = cluster.https.running.socket
    assert not leaks(herd_cli(socket, "config", "dump"))
    backup = tmp_path / "backup.json"
    herd_cli(socket, "config", "dump", "--with-secrets", "--file", str(backup))
    assert backup.stat().st_mode & 0o777 == 0o600
    assert DOMAIN_SECRETS[2] in backup.read_text()
    herd_cli(socket, "config", "restore", str(backup))
    assert cluster.https.running.master.store.list("cluster")[0].domain_secret == DOMAIN_SECRETS[2]
