"""The master as a real process: crash recovery after SIGKILL, one master per socket, and a
state directory that is root's alone."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from herd.client import Client
from herd.config.model import Cluster
from herd.config.store import SQLiteStore
from herd.crypto.secrets import generate_domain_secret, sign_message
from herd.errors import HerdError, MasterUnreachableError, PrerequisiteError
from herd.master.daemon import Master
from herd.ops.instance_remote import OFFER_KIND
from tests.engine.harness import PATIENCE, ThreadMaster, add_nodes, poll


class ProcessMaster:
    """``herd master`` in its own process, started the way operators start it."""

    def __init__(
        self,
        state_dir: Path,
        socket_path: Path,
        env: Mapping[str, str] | None = None,
        patience: float = PATIENCE,
    ) -> None:
        self.state_dir, self.socket = state_dir, socket_path
        env = {**os.environ, "HERD_SOCKET": str(socket_path), **(env or {})}
        argv = ["master", "--state-dir", str(state_dir), "--log-level", "WARNING"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "herd.cli.main", *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        poll("the master process to answer", self._answers, patience=patience)
        self.client = Client(str(socket_path), timeout=PATIENCE)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"master exited: {self.proc.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            with Client(str(self.socket), timeout=2) as c:
                c.info()
        except MasterUnreachableError:
            return False
        return True

    def kill(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(PATIENCE)
        self.proc.stderr.close()  # type: ignore[union-attr]

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(PATIENCE)
        self.proc.stderr.close()  # type: ignore[union-attr]


@pytest.fixture
def process_master(tmp_path: Path) -> Iterator[Callable[[], ProcessMaster]]:
    started: list[ProcessMaster] = []
    add_nodes(tmp_path / "state", ("n1", "n2"))

    def start() -> ProcessMaster:
        pm = ProcessMaster(tmp_path / "state", tmp_path / "master.sock")
        started.append(pm)
        return pm

    yield start
    for pm in started:
        pm.stop()


def wait_status(client: Client, job_id: int, status: str) -> dict[str, Any]:
    return poll(
        f"job {job_id} {status}", lambda: (d := client.job(job_id))["status"] == status and d
    )


def test_crash_fails_running_jobs_and_frees_their_locks(
    process_master: Callable[[], ProcessMaster],
) -> None:
    first = process_master()
    c = first.client
    c.set_queue(1)
    long = c.submit(
        [{"op": "debug.delay", "duration": 600, "lock_nodes": ["n1", "n2"], "log_messages": 600}]
    )
    wait_status(c, long, "running")
    poll("a log line", lambda: c.job(long)["log"])
    behind = c.submit([{"op": "debug.delay", "duration": 0}])
    first.kill()

    second = process_master()
    c2 = second.client
    crashed = c2.job(long)
    assert crashed["status"] == "error"
    assert "restarted" in crashed["error"]["message"]
    assert "locks were released" in crashed["error"]["message"]
    assert crashed["ops"][0]["status"] == "error"
    assert crashed["log"][-1]["message"] == "master restarted: job marked error"
    assert [e["serial"] for e in crashed["log"]] == list(range(1, len(crashed["log"]) + 1))
    wait_status(c2, behind, "success")
    again = c2.submit([{"op": "debug.delay", "lock_nodes": ["n1", "n2"]}])
    assert wait_status(c2, again, "success")["ops"][0]["result"]["locked_nodes"] == ["n1", "n2"]
    assert c2.queue()["max_running"] == 1


def test_a_second_master_on_a_live_socket_is_refused(herd_master: ThreadMaster) -> None:
    with pytest.raises(HerdError, match="already listening"):
        Master(herd_master.state_dir, herd_master.socket)
    assert herd_master.client().info()["api"] == 1


def test_nodes_in_the_store_get_locks_at_start(herd_master: ThreadMaster) -> None:
    uuids = {n.uuid for n in herd_master.master.store.list("node")}
    names = {(i["level"], i["name"]) for i in herd_master.client().locks()}
    assert {("node", u) for u in uuids} <= names
    assert {("node-res", u) for u in uuids} <= names


def test_shutdown_stops_serving_and_removes_the_socket(herd_master: ThreadMaster) -> None:
    herd_master.client().info()
    herd_master.stop()
    assert not herd_master.socket.exists()
    with pytest.raises(MasterUnreachableError):
        Client(str(herd_master.socket)).info()


# ---- the state directory -------------------------------------------------------------


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """A child started inside inherits ``mask``, as from an operator's shell."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_state_files_are_root_only_even_in_a_state_dir_made_0755(
    process_master: Callable[[], ProcessMaster], tmp_path: Path
) -> None:
    """Every file in it, SQLite's WAL and SHM files included, whether the master creates
    it or an earlier run left it readable to all."""
    state = tmp_path / "state"
    state.chmod(0o755)
    (state / "config.db").chmod(0o644)
    (state / "master.log").write_text("left by an earlier run\n")
    (state / "master.log").chmod(0o644)
    with umask(0o022):
        pm = process_master()
    wait_status(pm.client, pm.client.submit([{"op": "debug.delay", "duration": 0}]), "success")
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir() if p.is_file()}
    assert {
        "config.db",
        "config.db-wal",
        "jobs.db",
        "jobs.db-wal",
        "jobs.db-shm",
        "replay.db",
    } <= set(files)
    assert files == dict.fromkeys(files, 0o600)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_a_state_dir_others_can_write_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "herd.cli.main",
            "--socket",
            str(tmp_path / "m.sock"),
            "master",
            "--state-dir",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=PATIENCE * 4,
    )
    assert proc.returncode != 0
    assert f"refusing state directory {state}: it is mode 0777" in proc.stderr
    assert list(state.iterdir()) == []
    assert stat.S_IMODE(state.stat().st_mode) == 0o777


def test_a_state_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    with pytest.raises(PrerequisiteError) as err:
        Master(state, tmp_path / "m.sock")
    assert err.value.details == {"state_dir": str(state), "mode": "0700", "uid": 65534}
    assert list(state.iterdir()) == []


def test_a_signed_offer_replayed_to_a_restarted_master_is_refused(
    tmp_path: Path, master_factory: Callable[..., ThreadMaster]
) -> None:
    """The replay cache is in the state directory: a restart must not reopen the window
    in which an offer captured on the wire could start a second transfer."""
    secret = generate_domain_secret()
    add_nodes(tmp_path / "state", ("n1",))
    store = SQLiteStore(tmp_path / "state" / "config.db")
    with contextlib.closing(store), store.transaction() as txn:
        txn.add(Cluster(name="dest", domain_secret=secret))
    described = {"name": "i1", "disk_template": "file", "disks": [{"size": 64}]}
    offer = sign_message(
        secret,
        {"kind": OFFER_KIND, "source_cluster": "src", "source_ca_pem": "", "instance": described},
    )
    first = master_factory()
    accepted = first.wait_status(
        first.api.submit([{"op": "instance.receive", "offer": offer}]), "error"
    )
    assert "replayed" not in accepted["error"]["message"]  # checked, then failed further on
    first.stop()

    again = master_factory()
    job = again.wait_status(again.api.submit([{"op": "instance.receive", "offer": offer}]), "error")
    assert job["error"]["type"] == "AuthenticationError"
    assert "replayed" in job["error"]["message"]
