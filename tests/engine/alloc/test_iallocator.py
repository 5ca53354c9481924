"""The Ganeti iallocator protocol, against real subprocesses (a test script and hail)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from herd.alloc import iallocator
from herd.alloc.model import Snapshot
from herd.errors import HerdError, PrerequisiteError, ValidationError
from tests.engine.alloc.strategies import cluster, drbd, node, plain

HAIL = "hail"

#: An allocator that records its input and answers what the test put in ANSWER.
SCRIPT = """#!{python}
import json, sys
with open(sys.argv[1]) as fh:
    message = json.load(fh)
with open({record!r}, "w") as out:
    json.dump({{"argv": sys.argv[1:], "message": message}}, out)
{body}
"""


@pytest.fixture(autouse=True)
def search_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's allocators are installed in a directory searched after the real ones."""
    directory = tmp_path / "iallocators"
    directory.mkdir()
    monkeypatch.setattr(iallocator, "SEARCH_PATH", (*iallocator.SEARCH_PATH, directory))
    return directory


def make_allocator(tmp_path: Path, body: str, name: str = "my-alloc") -> tuple[str, Path]:
    """Install an allocator called ``name``; returns the name to pass and its record."""
    record = tmp_path / "seen.json"
    script = tmp_path / "iallocators" / name
    script.write_text(SCRIPT.format(python=sys.executable, record=str(record), body=body))
    script.chmod(0o755)
    return name, record


def answer(success: bool, result: object, info: str = "ok") -> str:
    text = json.dumps({"success": success, "info": info, "result": result})
    return f"print({text!r})"


def three_nodes() -> Snapshot:
    snap = cluster(node("a"), node("b", drained=True), node("c"), node("d", offline=True))
    return snap.place(drbd("old", memory=2048, disk=512), "a", "c")


def test_round_trip_writes_ganeti_input_and_reads_the_answer(tmp_path: Path) -> None:
    script, record = make_allocator(tmp_path, answer(True, ["c", "a"], "picked"))
    snap = three_nodes()
    nodes, info = iallocator.external_allocate(script, snap, drbd("new", memory=512, disk=100))
    assert (nodes, info) == (["c", "a"], "picked")
    seen = json.loads(record.read_text())
    msg = seen["message"]
    assert seen["argv"][0].endswith(".json")
    assert not Path(seen["argv"][0]).exists()  # the input file is cleaned up
    assert msg["version"] == 2
    assert msg["cluster_name"] == "test-cluster"
    (group_uuid,) = msg["nodegroups"]
    assert msg["nodegroups"][group_uuid]["name"] == "default"
    assert msg["nodegroups"][group_uuid]["alloc_policy"] == "preferred"
    a = msg["nodes"]["a"]
    assert a["group"] == group_uuid
    assert (a["total_memory"], a["free_memory"], a["i_pri_memory"]) == (32768, 30720, 2048)
    assert a["reserved_memory"] == 0
    assert msg["nodes"]["b"]["drained"] is True
    # Offline nodes carry no run-time data, as in Ganeti.
    assert "free_memory" not in msg["nodes"]["d"]
    assert msg["instances"]["old"]["nodes"] == ["a", "c"]
    assert msg["instances"]["old"]["disk_space_total"] == 512 + 128
    req = msg["request"]
    assert req["type"] == "allocate"
    assert (req["name"], req["required_nodes"], req["memory"]) == ("new", 2, 512)
    assert req["disks"] == [{"size": 100, "mode": "rw", "spindles": 1}]
    assert "restrict-to-nodes" not in req


def test_restriction_is_passed_and_enforced(tmp_path: Path) -> None:
    script, record = make_allocator(tmp_path, answer(True, ["a"]))
    snap = three_nodes()
    nodes, _ = iallocator.external_allocate(script, snap, plain("p"), only_nodes={"a"})
    assert nodes == ["a"]
    assert json.loads(record.read_text())["message"]["request"]["restrict-to-nodes"] == ["a"]
    with pytest.raises(HerdError, match="returned node a outside the locked nodes"):
        iallocator.external_allocate(script, snap, plain("p"), only_nodes={"c"})


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        (["a"], "returned 1 nodes ['a'], expected 2"),
        (["a", "a"], "returned the same node twice"),
        (["a", "zz"], "returned unknown node 'zz'"),
        (["a", "b"], "returned node b which is drained"),
        (["d", "a"], "returned node d which is offline"),
        ("a", "result must be a list of node names"),
    ],
)
def test_bad_results_name_the_allocator_and_the_problem(
    tmp_path: Path, result: object, problem: str
) -> None:
    script, _ = make_allocator(tmp_path, answer(True, result))
    with pytest.raises(HerdError) as err:
        iallocator.external_allocate(script, three_nodes(), drbd("new"))
    assert err.value.message.startswith("iallocator my-alloc: ")
    assert problem in err.value.message
    assert err.value.details["allocator"] == script


def test_mirrored_result_across_groups_is_refused(tmp_path: Path) -> None:
    script, _ = make_allocator(tmp_path, answer(True, ["a", "x"]))
    snap = cluster(node("a"), node("x", "other"))
    with pytest.raises(HerdError, match="in different node groups"):
        iallocator.external_allocate(script, snap, drbd("new"))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("sys.stderr.write('boom'); sys.exit(3)", "exited with status 3: boom"),
        ("print('not json')", "did not print JSON"),
        ("print('[1]')", "answered list, not an object"),
        ("print('{\"success\": true}')", "answer lacks a valid 'info'"),
        ("import time; time.sleep(30)", "did not answer within 0.5 s"),
    ],
)
def test_broken_allocators_are_reported(tmp_path: Path, body: str, problem: str) -> None:
    script, _ = make_allocator(tmp_path, body)
    # Only the hanging allocator gets the short limit: a loaded box may take longer than
    # that just to start Python, which must not turn the other cases into timeouts.
    timeout = 0.5 if "sleep" in body else iallocator.DEFAULT_TIMEOUT
    with pytest.raises(HerdError) as err:
        iallocator.run(script, {"request": {}}, timeout=timeout)
    assert problem in err.value.message
    assert "my-alloc" in err.value.message


def test_old_nodes_key_is_accepted_and_failure_is_an_answer(tmp_path: Path) -> None:
    script, _ = make_allocator(tmp_path, 'print(\'{"success": true, "info": "", "nodes": ["a"]}\')')
    assert iallocator.run(script, {})["result"] == ["a"]
    script, _ = make_allocator(tmp_path, answer(False, [], "no room"))
    assert iallocator.external_allocate(script, three_nodes(), plain("p")) == (None, "no room")


def test_missing_allocator_is_a_validation_error_listing_the_installed_ones(
    tmp_path: Path,
) -> None:
    make_allocator(tmp_path, answer(True, ["a"]))
    with pytest.raises(ValidationError) as err:
        iallocator.run("nope", {})
    assert err.value.details["field"] == "iallocator"
    assert str(tmp_path / "iallocators") in err.value.details["allowed"]
    assert "my-alloc" in err.value.details["allowed"]


@pytest.mark.parametrize(
    "value",
    ["/bin/sh", "../x", "sh;id", ".hidden", "a/b", "$(id)", "", "x" * 65, "sh id"],
)
def test_paths_and_odd_names_are_refused_before_anything_runs(
    tmp_path: Path, search_dir: Path, value: str
) -> None:
    # Even a real executable reachable through the value is not run.
    (tmp_path / "x").write_text("#!/bin/sh\ntouch ran\n")
    (tmp_path / "x").chmod(0o755)
    assert iallocator.allocator_problem(value) is not None
    with pytest.raises(ValidationError) as err:
        iallocator.run(value, {})
    assert err.value.details["value"] == value
    assert "letters, digits" in err.value.details["allowed"]
    assert not (tmp_path / "ran").exists()


def test_a_non_executable_file_is_not_an_allocator(tmp_path: Path, search_dir: Path) -> None:
    (search_dir / "plain").write_text("#!/bin/sh\n")
    assert iallocator.allocator_problem("plain") is not None
    assert "plain" not in iallocator.installed()


def test_caller_strings_reach_the_allocator_only_as_json_data(tmp_path: Path) -> None:
    """An OS name (or tag) built to break out of a shell is just a string in the input file:
    the allocator runs from an argv list, never through a shell."""
    script, record = make_allocator(tmp_path, answer(True, ["a"]))
    evil = f"$(touch {tmp_path}/pwned)`touch {tmp_path}/pwned`;touch {tmp_path}/pwned"
    spec = dataclasses.replace(plain("p"), os=evil, tags=(evil,))
    iallocator.external_allocate(script, three_nodes(), spec)
    seen = json.loads(record.read_text())
    assert seen["message"]["request"]["os"] == evil
    assert seen["message"]["request"]["tags"] == [evil]
    assert len(seen["argv"]) == 1
    assert not (tmp_path / "pwned").exists()


def test_relocate_request_and_answer_checks(tmp_path: Path) -> None:
    snap = cluster(node("a"), node("b"), node("c"), node("x", "g2"))
    snap = snap.place(drbd("i1"), "a", "b")
    script, record = make_allocator(tmp_path, answer(True, ["c"]))
    assert iallocator.external_relocate(script, snap, "i1") == "c"
    req = json.loads(record.read_text())["message"]["request"]
    assert req == {
        "type": "relocate",
        "name": "i1",
        "required_nodes": 1,
        "disk_space_total": 1024 + 128,
        "relocate_from": ["b"],
    }
    for result, problem in ((["a"], "onto its own node a"), (["x"], "in another group")):
        script, _ = make_allocator(tmp_path, answer(True, result))
        with pytest.raises(HerdError, match=problem):
            iallocator.external_relocate(script, snap, "i1")
    script, _ = make_allocator(tmp_path, answer(False, [], "full"))
    with pytest.raises(PrerequisiteError, match="found no new secondary for i1: full"):
        iallocator.external_relocate(script, snap, "i1")


needs_hail = pytest.mark.skipif(
    not Path("/usr/lib/ganeti/iallocators/hail").exists(),
    reason="ganeti-htools (hail) not installed",
)


@needs_hail
def test_real_hail_allocates_a_drbd_pair_and_relocates() -> None:
    snap = cluster(node("n1", free=20000), node("n2", free=16000), node("n3", free=24000))
    snap = snap.place(drbd("old", memory=512), "n1", "n2")
    nodes, info = iallocator.external_allocate(HAIL, snap, drbd("new", memory=256))
    assert info.startswith("Request successful")
    assert len(nodes or []) == 2 and len(set(nodes or [])) == 2
    # hail also prefers the emptiest node as primary.
    assert (nodes or [])[0] == "n3"
    assert iallocator.external_relocate(HAIL, snap, "old") == "n3"


@needs_hail
def test_real_hail_respects_drained_nodes_and_says_no() -> None:
    snap = cluster(node("n1", free=20000, drained=True), node("n2", free=20000))
    assert iallocator.external_allocate(HAIL, snap, plain("p"))[0] == ["n2"]
    nodes, info = iallocator.external_allocate(HAIL, snap, drbd("d"))
    assert nodes is None
    assert info
