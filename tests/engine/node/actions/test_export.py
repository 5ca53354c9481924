"""Export actions with real background workers on a temporary node root."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from herd.errors import NotFoundError, ValidationError
from herd.node.actions import load_all
from herd.node.actions.registry import NodeContext, dispatch

MIB = 1024 * 1024
load_all()

Call = Callable[..., dict[str, Any]]


@pytest.fixture
def call(tmp_path: Path) -> Call:
    ctx = NodeContext(root=tmp_path / "root")

    def do(action_name: str, /, **args: Any) -> dict[str, Any]:
        return dispatch(ctx, action_name, args)

    return do


def disk(path: Path, size_mib: int, data_at_mib: list[int]) -> str:
    with open(path, "wb") as f:
        f.truncate(size_mib * MIB)
        for off in data_at_mib:
            f.seek(off * MIB)
            f.write(os.urandom(MIB // 2))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def finish(call: Call, tid: str, role: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = call("export_status", transfer_id=tid, role=role)
        if st["state"] != "running":
            return st
        time.sleep(0.05)
    raise AssertionError(f"{role} {tid} did not finish")


def export(
    call: Call, name: str, source: Path, compression: str = "zstd", run: int = 1
) -> dict[str, Any]:
    """One complete export of ``source`` as ``name`` (``run`` keeps the ids of repeats apart)."""
    tid, token = f"ex-{name}-{run}", f"tok-{name}-{run}"
    call("export_begin", token=token)
    call(
        "export_disk_start",
        transfer_id=tid,
        token=token,
        index=0,
        source_path=str(source),
        compression=compression,
    )
    st = finish(call, tid, "export")
    assert st["state"] == "done", st
    manifest = {
        "name": name,
        "disks": [{"size": 8, "digest": st["digest"]}],
        "compression": compression,
    }
    call("export_commit", token=token, name=name, manifest=manifest)
    return st


def test_export_list_import_round_trip(call: Call, tmp_path: Path) -> None:
    src = tmp_path / "src.img"
    digest = disk(src, 8, [1, 6])
    st = export(call, "web1", src)
    assert st["data_bytes"] == MIB  # only the two data extents were read into the stream
    (found,) = call("export_list")["exports"]
    assert found["name"] == "web1" and found["disks"][0]["digest"] == st["digest"]
    assert 0 < found["stream_bytes"] < 2 * MIB

    dest = tmp_path / "dest.img"
    call(
        "import_disk_start",
        transfer_id="im-1",
        name="web1",
        index=0,
        dest_path=str(dest),
        size_mib=8,
        compression="zstd",
    )
    done = finish(call, "im-1", "import")
    assert done["state"] == "done" and done["digest"] == st["digest"]
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest

    call("disk_digest_start", transfer_id="dg-1", source_path=str(dest))
    assert finish(call, "dg-1", "digest")["digest"] == st["digest"]


def test_reexport_replaces_and_a_discarded_one_leaves_nothing(call: Call, tmp_path: Path) -> None:
    src = tmp_path / "src.img"
    disk(src, 8, [2])
    export(call, "db1", src)
    disk(src, 8, [3])
    second = export(call, "db1", src, run=2)
    (found,) = call("export_list", names=["db1"])["exports"]
    assert found["disks"][0]["digest"] == second["digest"]
    root = tmp_path / "root" / "export"
    assert sorted(p.name for p in root.iterdir()) == ["db1"]

    call("export_begin", token="tok-x")
    assert call("export_list")["exports"] == [found]
    assert call("export_discard", token="tok-x")["changed"] is True
    assert sorted(p.name for p in root.iterdir()) == ["db1"]
    assert call("export_remove", name="db1")["changed"] is True
    assert call("export_remove", name="db1")["changed"] is False
    assert call("export_list")["exports"] == []


def test_aborted_export_removes_its_partial_stream(call: Call, tmp_path: Path) -> None:
    src = tmp_path / "big.img"
    disk(src, 256, list(range(0, 256, 2)))
    work = Path(call("export_begin", token="tok-a")["path"])
    call(
        "export_disk_start",
        transfer_id="ex-a",
        token="tok-a",
        index=0,
        source_path=str(src),
        compression="gzip-slow",
    )
    call("export_abort", transfer_id="ex-a", role="export")
    st = call("export_status", transfer_id="ex-a", role="export")
    # 64 MiB of random data through gzip -9 takes seconds; the abort comes within ms.
    assert st["state"] == "failed" and "aborted" in st["error"]["message"]
    assert not (work / "disk0.stream").exists()
    assert call("export_list")["exports"] == []


def test_a_corrupt_stream_fails_the_import_and_removes_the_new_file(
    call: Call, tmp_path: Path
) -> None:
    src = tmp_path / "src.img"
    disk(src, 8, [4])
    export(call, "bad1", src, compression="none")
    stream = tmp_path / "root" / "export" / "bad1" / "disk0.stream"
    data = bytearray(stream.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stream.write_bytes(bytes(data))
    dest = tmp_path / "restored.img"
    call(
        "import_disk_start",
        transfer_id="im-bad",
        name="bad1",
        index=0,
        dest_path=str(dest),
        size_mib=8,
    )
    st = finish(call, "im-bad", "import")
    assert st["state"] == "failed" and "checksum" in st["error"]["message"]
    assert not dest.exists()


def test_names_and_missing_exports_are_refused(call: Call, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        call("export_remove", name="../etc")
    assert err.value.details["field"] == "name"
    with pytest.raises(ValidationError):
        call("export_begin", token="a/b")
    with pytest.raises(NotFoundError):
        call(
            "import_disk_start",
            transfer_id="im-x",
            name="nothing",
            index=0,
            dest_path=str(tmp_path / "x.img"),
            size_mib=1,
        )
    with pytest.raises(ValidationError) as err:
        call("export_status", transfer_id="ex-1", role="send")
    assert err.value.details["field"] == "role"
