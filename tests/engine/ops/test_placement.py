"""The shared ``iallocator`` parameter: a name in fixed directories, refused at submit time.

A write token once made the master (root) run ``/bin/sh`` by passing it as the
allocator of ``instance.add``; every op taking an allocator must refuse that with a
400 before a job exists.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from herd.alloc import iallocator
from herd.errors import HerdError, ValidationError
from herd.ops.instance_remote import OFFER_KIND
from tests.engine.harness import ThreadMaster

BAD = ["/bin/sh", "../x", "sh;id", "/usr/lib/ganeti/iallocators/hail", "$(id)"]


def ops_with(value: str) -> list[tuple[dict[str, Any], str]]:
    """One op of each kind that takes an allocator, and the field naming it."""
    described = {"name": "i1", "disk_template": "file", "iallocator": value}
    offer = {"msg": json.dumps({"kind": OFFER_KIND, "instance": described})}
    return [
        ({"op": "instance.add", "name": "i1", "disk_template": "file", "iallocator": value}, ""),
        ({"op": "node.evacuate", "name": "n1", "iallocator": value}, ""),
        ({"op": "instance.import", "src_node": "n1", "src_name": "i1", "iallocator": value}, ""),
        ({"op": "instance.receive", "offer": offer}, "offer.instance."),
    ]


@pytest.fixture
def search_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "iallocators"
    directory.mkdir()
    script = directory / "site-alloc"
    script.write_text(f"#!{sys.executable}\nprint('{{}}')\n")
    script.chmod(0o755)
    monkeypatch.setattr(iallocator, "SEARCH_PATH", (directory,))
    return directory


def refused(master: ThreadMaster, op: dict[str, Any]) -> HerdError:
    with pytest.raises(HerdError) as err:
        master.api.submit([op])
    return err.value


@pytest.mark.parametrize("value", BAD)
def test_paths_and_shell_words_are_refused_by_every_op_before_a_job_exists(
    herd_master: ThreadMaster, search_dir: Path, value: str
) -> None:
    for op, prefix in ops_with(value):
        err = refused(herd_master, op)
        assert isinstance(err, ValidationError), op["op"]
        assert err.http_status == 400
        assert err.details["field"] == "ops[0]." + prefix + "iallocator"
        assert err.details["value"] == value
        assert "letters, digits" in err.details["allowed"]
    assert herd_master.api.request("GET", "/v1/jobs")["items"] == []


def test_unknown_name_is_refused_naming_the_directories_and_the_installed_ones(
    herd_master: ThreadMaster, search_dir: Path
) -> None:
    for op, prefix in ops_with("nope"):
        err = refused(herd_master, op)
        assert isinstance(err, ValidationError), op["op"]
        assert err.details["field"] == "ops[0]." + prefix + "iallocator"
        assert str(search_dir) in err.details["allowed"]
        assert "site-alloc" in err.details["allowed"]


def test_an_installed_name_is_accepted(herd_master: ThreadMaster, search_dir: Path) -> None:
    op = {"op": "instance.add", "name": "i1", "disk_template": "file", "iallocator": "site-alloc"}
    assert herd_master.api.submit([op]) > 0


def test_destination_allocator_is_checked_as_a_name_only(herd_master: ThreadMaster) -> None:
    """It is looked up on the other cluster, so only its form can be checked here."""
    move = {"op": "instance.move", "name": "i1", "dest_cluster": "/run/other.sock"}
    err = refused(herd_master, {**move, "dest_iallocator": "/bin/sh"})
    assert isinstance(err, ValidationError)
    assert err.details["field"] == "ops[0].dest_iallocator"
