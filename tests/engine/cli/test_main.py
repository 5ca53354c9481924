"""The ``herd`` command line, run in-process (``main(argv)``) against a thread master."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from herd.cli.main import build_parser, main
from tests.engine.harness import ThreadMaster


def herd(tm: ThreadMaster, *argv: str) -> int:
    return main(["--socket", str(tm.socket), *argv])


def test_op_command_waits_and_prints_result_and_log(
    herd_master: ThreadMaster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert herd(herd_master, "debug", "delay", "0", "--log-messages", "2") == 0
    out, err = capsys.readouterr()
    assert "slept: 0.0" in out.splitlines()
    assert "job 1 submitted" in err
    assert err.index("delay step 1/2") < err.index("delay step 2/2")
    doc = herd_master.client().job(1)
    assert doc["reason"][0][:2] == ["cli:herd", "herd debug delay"]


def test_submit_prints_only_the_job_id(
    herd_master: ThreadMaster, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("debug", "delay", "--submit", "--priority", "-10", "--reason", "maintenance")
    assert herd(herd_master, *argv) == 0
    job_id = int(capsys.readouterr().out)
    doc = herd_master.wait_status(job_id, "success")
    assert doc["priority"] == -10
    assert doc["reason"][0][:2] == ["cli:herd", "maintenance"]


def test_json_output_of_job_info_and_list(
    herd_master: ThreadMaster, capsys: pytest.CaptureFixture[str]
) -> None:
    herd_master.client().run([{"op": "debug.delay", "log_messages": 1}])
    capsys.readouterr()
    assert herd(herd_master, "--output", "json", "job", "info", "1") == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["id"], doc["status"]) == (1, "success")
    assert doc["log"][0]["message"] == "delay step 1/1"
    assert herd(herd_master, "-o", "json", "job", "list") == 0
    assert [j["id"] for j in json.loads(capsys.readouterr().out)] == [1]
    assert herd(herd_master, "job", "list") == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["ID", "STATUS", "PRIORITY"]
    assert row.split()[:2] == ["1", "success"]


def test_failed_job_exits_non_zero(
    herd_master: ThreadMaster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert herd(herd_master, "debug", "delay", "--fail") == 1
    assert "job 1 error: debug.delay failed on request" in capsys.readouterr().err


def test_bad_parameter_names_the_field(
    herd_master: ThreadMaster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert herd(herd_master, "debug", "delay", "--log-messages", "-1") == 1
    err = capsys.readouterr().err
    assert "ops[0].log_messages" in err
    assert "-1" in err
    assert herd_master.client().jobs() == []


def test_job_cancel(herd_master: ThreadMaster, capsys: pytest.CaptureFixture[str]) -> None:
    m = herd_master.master
    m.locks.acquire("test-holder", "node", [m.store.get("node", "n1").uuid])
    try:
        job_id = herd_master.client().submit([{"op": "debug.delay", "lock_nodes": ["n1"]}])
        herd_master.wait_status(job_id, "waiting")
        assert herd(herd_master, "job", "cancel", str(job_id)) == 0
        assert capsys.readouterr().out == f"job {job_id}: canceling\n"
        herd_master.wait_status(job_id, "canceled")
    finally:
        m.locks.release_all("test-holder")
    assert herd(herd_master, "job", "cancel", str(job_id)) == 1
    assert "already finished (canceled)" in capsys.readouterr().err


def test_queue_set_and_info(herd_master: ThreadMaster, capsys: pytest.CaptureFixture[str]) -> None:
    assert herd(herd_master, "queue", "set", "--max-running", "3") == 0
    assert "max_running: 3" in capsys.readouterr().out
    assert herd(herd_master, "-o", "json", "queue", "info") == 0
    assert json.loads(capsys.readouterr().out)["max_running"] == 3
    assert herd(herd_master, "queue", "set", "--max-running", "0") == 1
    assert "max_running" in capsys.readouterr().err


def test_config_dump_to_a_private_file(
    herd_master: ThreadMaster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "dump.json"
    assert herd(herd_master, "config", "dump", "--file", str(target)) == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    data = json.loads(target.read_text())
    assert [n["name"] for n in data["objects"]["node"]] == ["n1", "n2"]
    assert capsys.readouterr().out == ""


def test_node_list(herd_master: ThreadMaster, capsys: pytest.CaptureFixture[str]) -> None:
    assert herd(herd_master, "node", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["NAME", "n1", "n2"]


def test_no_master_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--socket", str(tmp_path / "no.sock"), "job", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("herd: error: no herd master answers at")


def test_broken_pipe_is_quiet(herd_master: ThreadMaster) -> None:
    """``herd job info N | head`` must not print a traceback when head exits early."""
    job_id = herd_master.client().submit([{"op": "debug.delay", "log_messages": 3000}])
    # 3000 log rows take a while on a loaded machine; only a hang should fail the test.
    herd_master.wait_status(job_id, "success", patience=300)
    env = {**os.environ, "HERD_SOCKET": str(herd_master.socket)}
    reader = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    cli = subprocess.run(
        [sys.executable, "-m", "herd.cli.main", "-o", "json", "job", "info", str(job_id)],
        env=env,
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        timeout=60,
        check=False,
    )
    reader.stdin.close()  # type: ignore[union-attr]
    first = reader.stdout.read()  # type: ignore[union-attr]
    reader.wait(10)
    reader.stdout.close()  # type: ignore[union-attr]
    assert first == b"{\n"
    assert cli.stderr == b""
    assert cli.returncode == 141


def test_a_job_command_sets_up_only_the_parsers_it_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other commands are stand-ins: setting up ~15 parsers (their translated strings
    looked up one by one) cost more start-up than the job's round trip."""
    built: list[str] = []
    set_up = argparse.ArgumentParser.__init__

    def counted(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        built.append(str(kwargs.get("prog")))
        set_up(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(argparse.ArgumentParser, "__init__", counted)
    args = build_parser(["debug", "delay", "0"]).parse_args(["debug", "delay", "0"])
    assert (args.noun, args.verb, args.duration) == ("debug", "delay", "0")
    assert built == ["herd", "herd debug", "herd debug delay"]


def test_a_job_command_loads_no_tls_http_client_or_dataclasses(herd_master: ThreadMaster) -> None:
    """What only HTTPS (ssl, http.client and its email parser) or the master needs stays
    out of a local command's start-up."""
    code = (
        "import json, sys; from herd.cli.main import main;"
        f"main(['--socket', {str(herd_master.socket)!r}, 'debug', 'delay', '0']);"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "slept: 0.0" in out.stdout
    loaded = json.loads(out.stderr.splitlines()[-1])
    heavy = ("ssl", "_ssl", "http", "email", "dataclasses", "inspect")
    assert [m for m in loaded if m.split(".")[0] in heavy] == []
