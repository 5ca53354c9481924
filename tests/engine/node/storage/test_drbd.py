"""DRBD backend logic: create sequence, replay safety, promotion guard, runtime flags.

drbdadm and LVM are a scripted runner here and /proc/drbd is a file the test writes, as
the host has no DRBD module; the command forms themselves are checked against the real
drbdadm in test_drbd_config.py, and the real kernel runs on the VM nodes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from herd.errors import NodeError, PrerequisiteError
from herd.node.actions.registry import NodeContext
from herd.node.storage.base import DiskSpec, backend_for
from herd.node.storage.drbd import DrbdStorage, list_drbd
from herd.node.storage.drbd_config import render
from herd.redact import REDACTED
from tests.engine.node.storage.helpers import ScriptedRunner, data

OK = (0, "", "")
EMPTY = (0, data("lvs_empty.json"), "")
HEADER = "version: 8.4.11 (api:1/proto:86-101)\nsrcversion: 211FB288A383ED945B83420 \n"
CONNECTED_SECONDARY = " 5: cs:Connected ro:Secondary/Secondary ds:UpToDate/UpToDate C r-----\n"
WAITING = " 5: cs:WFConnection ro:Secondary/Unknown ds:UpToDate/DUnknown C r-----\n"
STANDALONE = " 5: cs:StandAlone ro:Secondary/Unknown ds:UpToDate/DUnknown   r-----\n"
FRESH = " 5: cs:Connected ro:Secondary/Secondary ds:Inconsistent/Inconsistent C r-----\n"


def lvs(lv: str, size_mib: int) -> tuple[tuple[str, ...], tuple[int, str, str]]:
    row = json.dumps({"vg_name": "herd", "lv_name": lv, "lv_size": str(size_mib << 20),
                      "lv_attr": "-wi-a-----"})  # fmt: skip
    return ("lvs",), (0, f'{{"report": [{{"lv": [{row}]}}]}}', "")


def disk() -> DiskSpec:
    return DiskSpec(
        uuid="d1", index=0, template="drbd", size_mib=1024,
        params={"port": 11000, "minors": {"node1": 5, "node2": 7}, "secret": "s3cret",
                "nodes": ["node1", "node2"],
                "addresses": {"node1": "10.0.0.1", "node2": "10.0.0.2"}},
    )  # fmt: skip


class Node:
    """A DRBD backend for "node1" with its /proc/drbd under the test's control."""

    def __init__(self, ctx: NodeContext, tmp_path: Path, runner: ScriptedRunner) -> None:
        self.proc = tmp_path / "proc_drbd"
        self.proc.write_text(HEADER)
        self.runner = runner
        self.backend = DrbdStorage(
            ctx, runner, node_name="node1", conf_dir=tmp_path / "drbd.d", proc_drbd=self.proc
        )

    def state(self, line: str) -> None:
        self.proc.write_text(HEADER + line)

    def drbdadm(self) -> list[tuple[str, ...]]:
        return [c[3:] for c in self.runner.commands("drbdadm")]


def test_registered_for_the_drbd_template(ctx: NodeContext) -> None:
    assert isinstance(backend_for("drbd", ctx), DrbdStorage)


def test_create_makes_lvs_metadata_and_brings_the_resource_up(
    ctx: NodeContext, tmp_path: Path
) -> None:
    runner = ScriptedRunner(
        (("lvs",), EMPTY), (("lvcreate",), OK), (("lvs",), EMPTY), (("lvcreate",), OK),
        (("drbdadm",), OK), (("drbdadm",), OK),
    )  # fmt: skip
    node = Node(ctx, tmp_path, runner)
    assert node.backend.create(disk()) is True
    sizes = [c[c.index("-L") + 1 : c.index("-L") + 4] for c in runner.commands("lvcreate")]
    assert sizes == [("1024m", "-n", "herd-d1.data"), ("128m", "-n", "herd-d1.meta")]
    assert node.drbdadm() == [("--force", "create-md", "herd-d1"), ("up", "herd-d1")]
    conf = tmp_path / "drbd.d" / "herd-d1.res"
    assert runner.commands("drbdadm")[0][:3] == ("drbdadm", "-c", str(conf))
    assert conf.stat().st_mode & 0o777 == 0o600
    assert "device /dev/drbd5 minor 5;" in conf.read_text()


#: What drbdadm 8.4 printed on a loaded host's software-emulated guest (exit code 20).
OVERRUN = (20, "", "Command 'drbdsetup-84 connect herd-d1 ...' did not terminate within 5 seconds")


def test_an_up_whose_drbdsetup_overran_is_finished_by_adjust(
    ctx: NodeContext, tmp_path: Path
) -> None:
    runner = ScriptedRunner(
        lvs("herd-d1.data", 1024), lvs("herd-d1.meta", 128), (("drbdadm",), OK),
        (("drbdadm",), OVERRUN), (("drbdadm",), OVERRUN), (("drbdadm",), OK),
    )  # fmt: skip
    node = Node(ctx, tmp_path, runner)
    assert node.backend.create(disk()) is True
    assert node.drbdadm()[1:] == [("up", "herd-d1"), ("adjust", "herd-d1"), ("adjust", "herd-d1")]


def test_an_overrun_that_never_settles_and_a_real_failure_are_errors(
    ctx: NodeContext, tmp_path: Path
) -> None:
    runner = ScriptedRunner(*[(("drbdadm",), OVERRUN)] * 6)
    node = Node(ctx, tmp_path, runner)
    node.state(STANDALONE)
    with pytest.raises(NodeError, match="did not terminate"):
        node.backend.assemble(disk())
    assert len(node.drbdadm()) == 6
    failing = ScriptedRunner((("drbdadm",), (20, "", "Command 'drbdsetup-84 ...' exit code 10")))
    node = Node(ctx, tmp_path, failing)
    node.state(STANDALONE)
    with pytest.raises(NodeError, match="exit code 10"):
        node.backend.assemble(disk())
    assert len(node.drbdadm()) == 1


def test_replayed_create_keeps_existing_metadata(ctx: NodeContext, tmp_path: Path) -> None:
    """A retried create must not run create-md over metadata that may hold real state."""
    runner = ScriptedRunner(
        lvs("herd-d1.data", 1024), lvs("herd-d1.meta", 128),
        (("drbdadm",), OK), (("drbdadm",), OK),
    )  # fmt: skip
    node = Node(ctx, tmp_path, runner)
    assert node.backend.create(disk()) is True  # the resource file and the "up" are new
    assert node.drbdadm() == [("dump-md", "herd-d1"), ("up", "herd-d1")]
    node.state(CONNECTED_SECONDARY)
    runner.script += [lvs("herd-d1.data", 1024), lvs("herd-d1.meta", 128), (("drbdadm",), OK)]
    assert node.backend.create(disk()) is False
    assert node.drbdadm()[2:] == [("adjust", "herd-d1")]


def test_promotion_needs_a_connected_up_to_date_disk_unless_forced(
    ctx: NodeContext, tmp_path: Path
) -> None:
    node = Node(ctx, tmp_path, ScriptedRunner((("drbdadm",), OK), (("drbdadm",), OK)))
    node.state(WAITING)
    with pytest.raises(PrerequisiteError, match="connection WFConnection"):
        node.backend.make_primary(disk())
    node.state(FRESH)
    with pytest.raises(PrerequisiteError, match="local disk Inconsistent"):
        node.backend.make_primary(disk())
    assert node.drbdadm() == []
    node.state(WAITING)
    assert node.backend.make_primary(disk(), force=True) is True
    node.state(CONNECTED_SECONDARY)
    assert node.backend.make_primary(disk()) is True
    assert node.drbdadm() == [("primary", "--force", "herd-d1"), ("primary", "herd-d1")]
    node.state(CONNECTED_SECONDARY.replace("ro:Secondary/", "ro:Primary/"))
    assert node.backend.make_primary(disk()) is False


def test_skip_initial_sync_only_on_a_fresh_connected_pair(ctx: NodeContext, tmp_path: Path) -> None:
    node = Node(ctx, tmp_path, ScriptedRunner((("drbdadm",), OK)))
    node.state(FRESH)
    assert node.backend.skip_initial_sync(disk()) is True
    assert node.drbdadm() == [("new-current-uuid", "--clear-bitmap", "herd-d1/0")]
    node.state(CONNECTED_SECONDARY)
    assert node.backend.skip_initial_sync(disk()) is False
    node.state(WAITING.replace("UpToDate", "Inconsistent"))
    with pytest.raises(PrerequisiteError):
        node.backend.skip_initial_sync(disk())


def test_split_brain_comes_from_the_handler_marker(ctx: NodeContext, tmp_path: Path) -> None:
    node = Node(ctx, tmp_path, ScriptedRunner())
    res = node.backend.resource(disk())
    node.state(STANDALONE)
    assert node.backend.status(res).split_brain is False
    marker = Path(res.split_brain_marker or "")
    assert f'split-brain "touch {marker}";' in render(res, 8)
    marker.parent.mkdir(parents=True)
    marker.touch()
    assert node.backend.status(res).split_brain is True
    node.state(CONNECTED_SECONDARY)
    assert node.backend.status(res).split_brain is False
    assert not marker.exists()


def test_dual_primary_is_persisted_and_applied(ctx: NodeContext, tmp_path: Path) -> None:
    node = Node(ctx, tmp_path, ScriptedRunner((("drbdadm",), OK), (("drbdadm",), OK)))
    node.state(CONNECTED_SECONDARY)
    conf = tmp_path / "drbd.d" / "herd-d1.res"
    assert node.backend.set_dual_primary(disk(), True) is True
    assert "allow-two-primaries yes;" in conf.read_text()
    assert node.backend.resource(disk()).allow_two_primaries is True
    assert node.backend.set_dual_primary(disk(), True) is False
    assert node.backend.set_dual_primary(disk(), False) is True
    assert "allow-two-primaries no;" in conf.read_text()
    assert node.drbdadm() == [
        ("net-options", "--allow-two-primaries=yes", "herd-d1"),
        ("net-options", "--allow-two-primaries=no", "herd-d1"),
    ]


def test_a_refused_dual_primary_change_is_not_stored_so_a_retry_applies_it(
    ctx: NodeContext, tmp_path: Path
) -> None:
    """DRBD refuses to forbid two primaries while it still sees both sides Primary (the
    peer's demotion lost on a cut link): the retry must run net-options again."""
    refused = (10, "", "Can not clear allow_two_primaries as long as there a primaries")
    runner = ScriptedRunner((("drbdadm",), OK), (("drbdadm",), refused), (("drbdadm",), OK))
    node = Node(ctx, tmp_path, runner)
    node.state(CONNECTED_SECONDARY)
    conf = tmp_path / "drbd.d" / "herd-d1.res"
    node.backend.set_dual_primary(disk(), True)
    with pytest.raises(NodeError, match="allow_two_primaries"):
        node.backend.set_dual_primary(disk(), False)
    assert "allow-two-primaries yes;" in conf.read_text()
    assert node.backend.set_dual_primary(disk(), False) is True
    assert "allow-two-primaries no;" in conf.read_text()
    assert node.drbdadm()[1:] == [("net-options", "--allow-two-primaries=no", "herd-d1")] * 2


def test_disconnect_and_attach_net_are_idempotent(ctx: NodeContext, tmp_path: Path) -> None:
    node = Node(ctx, tmp_path, ScriptedRunner((("drbdadm",), OK), (("drbdadm",), OK)))
    node.state(CONNECTED_SECONDARY)
    assert node.backend.disconnect(disk()) is True
    node.state(STANDALONE)
    assert node.backend.disconnect(disk()) is False
    assert node.backend.attach_net(disk()) is True
    node.state(CONNECTED_SECONDARY)
    assert node.backend.attach_net(disk()) is False
    assert node.drbdadm() == [("disconnect", "herd-d1"), ("connect", "herd-d1")]


#: How drbdadm shows the secret it was configured with: the drbdsetup command it echoes
#: when that fails, and a resource as ``drbdadm dump`` prints it.
ECHOED = (
    "Command 'drbdsetup-84 connect herd-d1 ipv4:10.0.0.1:11000 ipv4:10.0.0.2:11000 "
    "--protocol=C --shared-secret=s3cret --cram-hmac-alg=sha256' terminated with exit code 10",
    'net {\n    shared-secret "s3cret";\n}',
)


@pytest.mark.parametrize("stderr", ECHOED)
def test_a_failing_drbdadm_never_quotes_the_shared_secret(
    ctx: NodeContext, tmp_path: Path, stderr: str
) -> None:
    """drbdadm passes the secret to drbdsetup on its command line and quotes that command
    when it fails: the NodeError (and so the job error) must not carry it."""
    node = Node(ctx, tmp_path, ScriptedRunner((("drbdadm",), (10, "", stderr))))
    node.state(STANDALONE)
    with pytest.raises(NodeError) as err:
        node.backend.attach_net(disk())
    assert "s3cret" not in json.dumps(err.value.to_dict())
    assert stderr.replace("s3cret", REDACTED) in err.value.message


def test_a_long_secret_is_cut_out_of_drbdadm_output_wherever_it_is(
    ctx: NodeContext, tmp_path: Path
) -> None:
    spec = disk()
    spec.params["secret"] = "drbd-long-secret-value"
    answer = (0, "peer offered drbd-long-secret-value", "")
    node = Node(ctx, tmp_path, ScriptedRunner((("drbdadm",), answer)))
    result = node.backend.drbdadm(node.backend.resource(spec), "dump-md", "herd-d1")
    assert result.stdout == f"peer offered {REDACTED}"


def test_release_keeps_the_data_lv_and_drops_everything_else(
    ctx: NodeContext, tmp_path: Path
) -> None:
    """Conversion to plain: down, meta LV and resource file gone, data LV untouched."""
    runner = ScriptedRunner(
        (("drbdadm",), OK), lvs("herd-d1.meta", 128), (("lvremove",), OK),
    )  # fmt: skip
    node = Node(ctx, tmp_path, runner)
    res = node.backend.resource(disk())
    node.backend.write_config(res)
    node.state(CONNECTED_SECONDARY)
    assert node.backend.release(disk()) is True
    assert node.drbdadm() == [("down", "herd-d1")]
    assert [c[-1] for c in runner.commands("lvremove")] == ["herd/herd-d1.meta"]
    assert not node.backend.conf_path(res).exists()
    node.state("")
    runner.script += [(("lvs",), EMPTY)]
    assert node.backend.release(disk()) is False


def test_list_drbd_reports_herd_resource_files_and_configured_8_4_minors(tmp_path: Path) -> None:
    conf = tmp_path / "drbd.d"
    conf.mkdir()
    for name in ("herd-d1.res", "other.res", ".herd-d2.res.new"):
        (conf / name).write_text("")
    proc = tmp_path / "proc_drbd"
    assert list_drbd(ScriptedRunner(), conf, proc) == [
        {"resource": "herd-d1", "minor": None, "source": "file", "path": str(conf / "herd-d1.res")}
    ]
    proc.write_text(data("proc_drbd_84.txt"))
    kernel = [d for d in list_drbd(ScriptedRunner(), conf, proc) if d["source"] == "kernel"]
    assert [d["minor"] for d in kernel] == [0, 1, 2, 3, 5]
    assert {d["resource"] for d in kernel} == {None}


def test_list_drbd_9_names_the_resources_up(tmp_path: Path) -> None:
    proc = tmp_path / "proc_drbd"
    proc.write_text("version: 9.2.4 (api:2/proto:86-122)\n")
    runner = ScriptedRunner(
        (("drbdsetup", "status", "--json"), (0, data("drbdsetup_status_9.json"), ""))
    )
    found = list_drbd(runner, tmp_path / "none", proc)
    expected = {
        r["name"]: r["devices"][0]["minor"] for r in json.loads(data("drbdsetup_status_9.json"))
    }
    assert {d["resource"]: d["minor"] for d in found} == expected
    assert {d["source"] for d in found} == {"kernel"}
