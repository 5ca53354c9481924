"""Plain (LVM) backend: command lines and report parsing, plus real vgs/lvs on a loop VG.

The host has no device-mapper, so creating or activating an LV cannot run here; those
paths are checked against a scripted runner answering with captured ``lvs``/``vgs``
JSON.  Reading reports needs no device-mapper, so ``space`` and ``info`` also run for
real against a volume group on a loop device; the full cycle runs on the VM nodes.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from herd.errors import ConflictError, NodeError, NotFoundError, ValidationError
from herd.node.actions.registry import NodeContext
from herd.node.storage.base import DiskSpec, backend_for
from herd.node.storage.plain import LVM_ENV, PlainStorage, list_volumes, run_command
from tests.engine.node.storage.helpers import ScriptedRunner, data

OK = (0, "", "")
LV_MISSING = (0, data("lvs_empty.json"), "")
LV_ACTIVE = (0, data("lvs_volume.json"), "")
LV_INACTIVE = (0, data("lvs_inactive.json"), "")
LVS = ("lvs",)


def disk(size_mib: int = 1024, **params: object) -> DiskSpec:
    return DiskSpec(uuid="d1", index=0, template="plain", size_mib=size_mib, params=params)


def backend(ctx: NodeContext, runner: ScriptedRunner) -> PlainStorage:
    return PlainStorage(ctx, runner)


def test_registered_for_the_plain_template(ctx: NodeContext) -> None:
    assert isinstance(backend_for("plain", ctx), PlainStorage)


def test_create_runs_lvcreate_with_wiping_flags_in_the_named_vg(ctx: NodeContext) -> None:
    runner = ScriptedRunner((LVS, LV_MISSING), (("lvcreate",), OK))
    assert backend(ctx, runner).create(disk(vg="herd")) is True
    assert runner.calls == [
        ("lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
         "-o", "vg_name,lv_name,lv_size,lv_attr", "--select", "lv_name=d1.disk0", "herd"),
        ("lvcreate", "--yes", "--wipesignatures", "y", "--zero", "y",
         "-L", "1024m", "-n", "d1.disk0", "herd"),
    ]  # fmt: skip


def test_vg_comes_from_params_then_vg_name_then_default(ctx: NodeContext) -> None:
    for params, vg in (({"vg": "a", "vg_name": "b"}, "a"), ({"vg_name": "b"}, "b"), ({}, "herd")):
        runner = ScriptedRunner((LVS, LV_MISSING), (("lvcreate",), OK))
        backend(ctx, runner).create(disk(**params, lv="x"))
        assert runner.commands("lvcreate")[0][-3:] == ("-n", "x", vg)


def test_replayed_create_is_a_no_op_and_another_size_a_conflict(ctx: NodeContext) -> None:
    runner = ScriptedRunner((LVS, LV_ACTIVE))
    assert backend(ctx, runner).create(disk(1024)) is False
    assert runner.commands("lvcreate") == []
    with pytest.raises(ConflictError, match="1073741824 bytes, not the requested 2048 MiB"):
        backend(ctx, ScriptedRunner((LVS, LV_ACTIVE))).create(disk(2048))


def test_bad_names_are_refused_before_any_command(ctx: NodeContext) -> None:
    runner = ScriptedRunner()
    with pytest.raises(ValidationError) as err:
        backend(ctx, runner).create(disk(lv="x; rm -rf /"))
    assert err.value.details["field"] == "disk.params.lv"
    with pytest.raises(ValidationError, match=r"disk\.params\.vg"):
        backend(ctx, runner).create(disk(vg="-vg"))
    assert runner.calls == []


def test_remove_is_idempotent(ctx: NodeContext) -> None:
    runner = ScriptedRunner((LVS, LV_ACTIVE), (("lvremove",), OK), (LVS, LV_MISSING))
    plain = backend(ctx, runner)
    assert plain.remove(disk()) is True
    assert plain.remove(disk()) is False
    assert runner.commands("lvremove") == [("lvremove", "--yes", "herd/d1.disk0")]


def test_grow_extends_never_shrinks(ctx: NodeContext) -> None:
    runner = ScriptedRunner((LVS, LV_ACTIVE), (("lvextend",), OK), (LVS, LV_ACTIVE))
    plain = backend(ctx, runner)
    assert plain.grow(disk(), 2048) is True
    assert plain.grow(disk(), 1024) is False
    assert runner.commands("lvextend") == [("lvextend", "-L", "2048m", "herd/d1.disk0")]
    with pytest.raises(ValidationError, match="never shrink"):
        backend(ctx, ScriptedRunner((LVS, LV_ACTIVE))).grow(disk(), 512)
    with pytest.raises(NotFoundError, match="does not exist"):
        backend(ctx, ScriptedRunner((LVS, LV_MISSING))).grow(disk(), 2048)


def test_assemble_activates_only_an_inactive_volume(ctx: NodeContext) -> None:
    runner = ScriptedRunner((LVS, LV_INACTIVE), (("lvchange",), OK), (LVS, LV_ACTIVE))
    plain = backend(ctx, runner)
    assert plain.assemble(disk()) == {"path": "/dev/herd/d1.disk0"}
    assert plain.assemble(disk()) == {"path": "/dev/herd/d1.disk0"}
    assert runner.commands("lvchange") == [("lvchange", "-ay", "herd/d1.disk0")]


def test_shutdown_deactivates_only_an_active_volume(ctx: NodeContext) -> None:
    runner = ScriptedRunner(
        (LVS, LV_ACTIVE), (("lvchange",), OK), (LVS, LV_INACTIVE), (LVS, LV_MISSING)
    )
    plain = backend(ctx, runner)
    assert [plain.shutdown(disk()) for _ in range(3)] == [True, False, False]
    assert runner.commands("lvchange") == [("lvchange", "-an", "herd/d1.disk0")]


def test_info_reads_the_lvs_report(ctx: NodeContext) -> None:
    runner = ScriptedRunner((LVS, LV_INACTIVE), (LVS, LV_MISSING))
    plain = backend(ctx, runner)
    assert plain.info(disk()) == {
        "exists": True, "path": "/dev/herd/d1.disk0", "size_mib": 1024,
        "allocated_mib": 1024, "attached": False,
    }  # fmt: skip
    assert plain.info(disk())["exists"] is False


def test_space_reads_the_vgs_report(ctx: NodeContext) -> None:
    runner = ScriptedRunner((("vgs",), (0, data("vgs_herd.json"), "")))
    assert backend(ctx, runner).space() == {"total_mib": 252, "free_mib": 156}


def test_missing_vg_is_not_found_and_other_failures_carry_stderr(ctx: NodeContext) -> None:
    missing = (5, data("lvs_empty.json"), '  Volume group "herd" not found\n')
    with pytest.raises(NotFoundError, match="volume group herd does not exist"):
        backend(ctx, ScriptedRunner((LVS, missing))).info(disk())
    full = (5, "", '  Volume group "herd" has insufficient free space (10 extents): 256 required.')
    runner = ScriptedRunner((LVS, LV_MISSING), (("lvcreate",), full))
    with pytest.raises(NodeError, match=r"exit code 5: .*insufficient free space") as err:
        backend(ctx, runner).create(disk())
    assert err.value.details["returncode"] == 5


def test_runner_reports_stderr_timeouts_and_missing_tools() -> None:
    with pytest.raises(NodeError, match="exit code 3: boom") as err:
        run_command(["sh", "-c", "echo boom >&2; exit 3"])
    assert err.value.details["stderr"] == "boom"
    assert run_command(["sh", "-c", "exit 4"], check=False).returncode == 4
    with pytest.raises(NodeError, match=r"timed out after 0\.2 s"):
        run_command(["sleep", "10"], timeout=0.2)
    with pytest.raises(NodeError, match="not installed"):
        run_command(["herd-no-such-tool"])


@pytest.fixture
def loop_vg(tmp_path: Path) -> Iterator[str]:
    """A real volume group on a loop device (metadata only: no device-mapper here)."""
    if shutil.which("vgcreate") is None or shutil.which("losetup") is None:
        pytest.skip("lvm2 or losetup missing")
    image = tmp_path / "pv.img"
    image.write_bytes(b"")
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    attach = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if attach.returncode != 0:
        pytest.skip(f"no loop devices: {attach.stderr.strip()}")
    loop = attach.stdout.strip()
    vg = f"herdtest{uuid.uuid4().hex[:8]}"
    try:
        run_command(["pvcreate", "-y", loop], env=LVM_ENV)
        run_command(["vgcreate", vg, loop], env=LVM_ENV)
        yield vg
    finally:
        subprocess.run(["vgremove", "-y", vg], capture_output=True, check=False)
        subprocess.run(["pvremove", "-y", loop], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", loop], check=False)


def test_real_space_and_info_on_a_loop_volume_group(ctx: NodeContext, loop_vg: str) -> None:
    plain = PlainStorage(ctx, default_vg=loop_vg)
    space = plain.space()
    assert space["total_mib"] == space["free_mib"]
    assert 56 <= space["total_mib"] <= 64
    assert plain.info(disk(vg=loop_vg)) == {
        "exists": False, "path": f"/dev/{loop_vg}/d1.disk0", "size_mib": None,
        "allocated_mib": None, "attached": False,
    }  # fmt: skip
    with pytest.raises(NotFoundError, match="volume group nosuchvg"):
        plain.info(disk(vg="nosuchvg"))


UUID = "0b7e5a52-4a44-4b1c-9a0e-0c3f3b9d2a11"


def lvs_report(*names: str) -> tuple[int, str, str]:
    rows = ", ".join(
        f'{{"vg_name":"herd", "lv_name":"{n}", "lv_size":"8388608", "lv_attr":"-wi-a-----"}}'
        for n in names
    )
    return 0, f'{{"report": [{{"lv": [{rows}]}}]}}', ""


def test_list_volumes_keeps_only_herd_named_lvs_of_each_vg() -> None:
    herd_names = [f"{UUID}.disk0", f"{UUID}.disk1_data", f"{UUID}.disk1_meta", f"herd-{UUID}.data"]
    runner = ScriptedRunner(
        (LVS, lvs_report("root", "swap", *herd_names)),
        (LVS, (5, "", '  Volume group "other" not found\n')),
    )
    found = list_volumes(["herd", "other"], runner)
    assert found == [{"vg": "herd", "lv": name, "size_mib": 8} for name in herd_names]
    assert runner.calls[0][-1] == "herd" and "--select" not in runner.calls[0]


def test_list_volumes_on_a_node_without_lvm_is_empty_and_other_failures_raise() -> None:
    def missing(argv: object, **kwargs: object) -> object:
        return run_command(["/nonexistent/lvs"])

    assert list_volumes(["herd"], missing) == []
    with pytest.raises(NodeError, match="exit code 3"):
        list_volumes(["herd"], ScriptedRunner((LVS, (3, "", "device-mapper: broken"))))
    with pytest.raises(ValidationError):
        list_volumes(["bad vg"], ScriptedRunner())
