"""The ``drbd`` disk template: a DRBD device over two LVs per node, as in Ganeti.

Each node holds a data LV of the disk's size and a 128 MiB LV for flexible external
metadata; the resource is described by a generated file ``<conf_dir>/herd-<uuid>.res``
and driven with ``drbdadm -c <that file>``, so nothing depends on what else is in
/etc/drbd.conf.  The master decides ports, minors, the secret and which node is which;
this node only checks it is one of the two and that its own name matches an ``on``
section (drbdadm matches by host name, which is how Herd names nodes).

Creation is replay-safe: metadata is written only on a meta LV created by this very call
or one without valid metadata, so a retried create never wipes the generation ids of a
disk that already replicated data.  Promotion is the dangerous step, hence
``make_primary`` refuses while the peer is not connected or the local copy is not
UpToDate unless ``force`` is given: promoting a stale or isolated copy is how split
brains are made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

from herd.errors import ConflictError, NodeError, PrerequisiteError, ValidationError
from herd.node.actions.registry import NodeContext
from herd.node.storage.base import DiskSpec, StorageBackend, register_backend
from herd.node.storage.drbd_config import META_SIZE_MIB, DrbdResource, render
from herd.node.storage.drbd_status import (
    DrbdStatus,
    kernel_version,
    parse_proc_drbd,
    parse_status_json,
    unconfigured,
)
from herd.node.storage.plain import (
    DEFAULT_VG,
    LVM,
    MIB,
    CommandResult,
    Runner,
    command_error,
    lvm_name,
    run_command,
)
from herd.redact import REDACTED, scrub

CONF_DIR = Path("/etc/drbd.d")
PROC_DRBD = Path("/proc/drbd")
STATE_DIR = "drbd"
_SAFE_PATH = re.compile(r"[A-Za-z0-9/._-]+")
#: drbdadm's exit code when a drbdsetup it ran failed or, with "did not terminate within"
#: on stderr, overran drbdadm's own few-second bound (not configurable).
DRBDADM_CHILD_FAILED = 20
#: ``adjust`` runs after such an overrun before the error is given up on.
OVERRUN_RETRIES = 5
#: The secret as drbdadm shows it: in the drbdsetup command line it echoes when that
#: fails (``--shared-secret=…``) and in a dumped resource (``shared-secret "…";``).
_SHARED_SECRET = re.compile(r"(shared-secret[= ]\"?)[^\s\"';]+")


@register_backend
class DrbdStorage(StorageBackend):
    """Replicated disks; ``version`` (8 or 9) is read from the kernel unless given."""

    template = "drbd"

    def __init__(
        self,
        ctx: NodeContext,
        runner: Runner = run_command,
        *,
        node_name: str | None = None,
        version: int | None = None,
        conf_dir: Path = CONF_DIR,
        proc_drbd: Path = PROC_DRBD,
        default_vg: str = DEFAULT_VG,
    ) -> None:
        super().__init__(ctx)
        self.run = runner
        self.lvm = LVM(runner)
        self.node_name = node_name or socket.gethostname()
        self._version = version
        self.conf_dir = conf_dir
        self.proc_drbd = proc_drbd
        self.default_vg = lvm_name("vg", default_vg)

    # -- the resource ------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.ctx.root / STATE_DIR

    def resource(self, disk: DiskSpec) -> DrbdResource:
        """The checked resource for ``disk`` with this node's own runtime flags applied."""
        res = DrbdResource.from_params(f"herd-{disk.uuid}", disk.params, self.default_vg)
        res.host(self.node_name)
        marker = self.state_dir / f"{res.name}.split-brain"
        if not _SAFE_PATH.fullmatch(str(marker)):
            raise ValidationError("root", str(self.ctx.root), "a path of A-Za-z0-9/._-")
        return DrbdResource(
            **{
                **res.__dict__,
                "allow_two_primaries": self._flags(res).get("dual_primary", False),
                "split_brain_marker": str(marker),
            }
        )

    def conf_path(self, res: DrbdResource) -> Path:
        return self.conf_dir / f"{res.name}.res"

    @property
    def version(self) -> int:
        """Major version of the DRBD kernel module (8 or 9), loading the module if needed."""
        if self._version is None:
            if not self.proc_drbd.exists():
                self.run(["modprobe", "drbd"])
            self._version = kernel_version(self.proc_drbd.read_text())[0]
        return self._version

    def write_config(self, res: DrbdResource) -> bool:
        """Write the resource file if its content differs; True if it changed."""
        path = self.conf_path(res)
        text = render(res, self.version)
        with contextlib.suppress(FileNotFoundError):
            if path.read_text() == text:
                return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.new")
        # The file holds the replication secret: never readable by anyone but root.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        return True

    def drbdadm(self, res: DrbdResource, *args: str, check: bool = True) -> CommandResult:
        """Run drbdadm on ``res``, its output cleaned of the shared secret.

        Herd's own command line never holds the secret (it is in the resource file), but
        drbdadm passes it to drbdsetup as ``--shared-secret=…`` and quotes that command
        when it fails, so its stderr would carry the secret into a NodeError, the job's
        error and every log that shows it.
        """
        raw = self.run(
            ["drbdadm", "-c", str(self.conf_path(res)), *args], check=False, timeout=60.0
        )
        result = dataclasses.replace(
            raw,
            stdout=_without_secret(raw.stdout, res.secret),
            stderr=_without_secret(raw.stderr, res.secret),
        )
        if check and result.returncode != 0:
            raise command_error(result)
        return result

    def status(self, res: DrbdResource) -> DrbdStatus:
        """Current state of the resource on this node; ``Unconfigured`` when it is down."""
        minor = res.host(self.node_name).minor
        if self.version == 8:
            found = parse_proc_drbd(self.proc_drbd.read_text()).get(minor, unconfigured(minor))
        else:
            result = self.run(["drbdsetup", "status", "--json", res.name], check=False)
            if result.returncode != 0:
                if "No such resource" in result.stderr or "not defined" in result.stderr:
                    return unconfigured(minor)
                raise NodeError(f"drbdsetup status {res.name} failed: {result.stderr.strip()}")
            found = parse_status_json(result.stdout).get(res.name, unconfigured(minor))
        marker = Path(res.split_brain_marker or "")
        if found.connected:
            marker.unlink(missing_ok=True)
            return found
        if found.cstate == "StandAlone" and marker.is_file():
            return DrbdStatus(**{**found.__dict__, "split_brain": True})
        return found

    # -- StorageBackend ----------------------------------------------------------------

    def create(self, disk: DiskSpec) -> bool:
        res = self.resource(disk)
        data_new = self.lvm.create(res.vg, res.data_lv, disk.size_mib)
        meta_new = self.lvm.create(res.vg, res.meta_lv, META_SIZE_MIB)
        config_new = self.write_config(res)
        metadata_new = self._create_md(res, fresh=meta_new)
        up = self._up(res)
        return data_new or meta_new or config_new or metadata_new or up

    def remove(self, disk: DiskSpec) -> bool:
        res = self.resource(disk)
        changed = self.release(disk)
        return self.lvm.remove(res.vg, res.data_lv) or changed

    def release(self, disk: DiskSpec) -> bool:
        """Take DRBD off the disk and drop its metadata, but keep the data LV.

        External metadata leaves the data LV a plain copy of the disk, so this is how a
        disk converts to the ``plain`` template (and how a conversion the other way is
        undone) without copying a byte. The resource file goes too: left behind, it would
        bring a resource up over what is now someone's plain disk.
        """
        res = self.resource(disk)
        changed = self._down(res)
        changed = self.lvm.remove(res.vg, res.meta_lv) or changed
        for path in (self.conf_path(res), self.state_dir / f"{res.name}.json"):
            if path.exists():
                path.unlink()
                changed = True
        Path(res.split_brain_marker or "").unlink(missing_ok=True)
        return changed

    def grow(self, disk: DiskSpec, new_size_mib: int) -> bool:
        """Grow the data LV, then let DRBD use it once the peer has grown too.

        DRBD's size is the smaller of both backing devices, so the master grows the
        secondary first and the primary last; ``resize`` on the first is harmless and the
        one on the second makes the new size visible.
        """
        res = self.resource(disk)
        changed = self.lvm.extend(res.vg, res.data_lv, new_size_mib)
        if self.status(res).connected:
            self.drbdadm(res, "resize", res.name)
        return changed

    def assemble(self, disk: DiskSpec) -> dict[str, Any]:
        """Attach and connect (``adjust``); the role is the master's call (drbd_primary)."""
        res = self.resource(disk)
        self.write_config(res)
        self._up(res)
        minor = res.host(self.node_name).minor
        return {"path": f"/dev/drbd{minor}", "minor": minor}

    def shutdown(self, disk: DiskSpec) -> bool:
        return self._down(self.resource(disk))

    def info(self, disk: DiskSpec) -> dict[str, Any]:
        res = self.resource(disk)
        data = self.lvm.volume(res.vg, res.data_lv)
        meta = self.lvm.volume(res.vg, res.meta_lv)
        minor = res.host(self.node_name).minor
        state = self.status(res) if self.conf_path(res).exists() else unconfigured(minor)
        return {
            "exists": data is not None,
            "path": f"/dev/drbd{minor}",
            "size_mib": None if data is None else data.size_bytes // MIB,
            "allocated_mib": None
            if data is None
            else (data.size_bytes + (meta.size_bytes if meta else 0)) // MIB,
            "attached": state.configured,
            "drbd": state.to_dict(),
        }

    def space(self) -> dict[str, int]:
        return self.lvm.space(self.default_vg)

    # -- replication control (node actions in herd.node.actions.drbd) -------------------

    def attach_net(self, disk: DiskSpec) -> bool:
        res = self.resource(disk)
        self.write_config(res)
        state = self.status(res)
        if not state.configured:
            return self._up(res)
        if state.cstate == "StandAlone":
            self.drbdadm(res, "connect", res.name)
            return True
        return False

    def disconnect(self, disk: DiskSpec) -> bool:
        res = self.resource(disk)
        state = self.status(res)
        if not state.configured or state.cstate == "StandAlone":
            return False
        self.drbdadm(res, "disconnect", res.name)
        return True

    def make_primary(self, disk: DiskSpec, force: bool = False) -> bool:
        """Promote; refused unless connected with an UpToDate local disk, or ``force``."""
        res = self.resource(disk)
        state = self.status(res)
        if state.role == "Primary":
            return False
        if not state.configured:
            raise PrerequisiteError(f"DRBD resource {res.name} is not up on this node")
        if not force and not (state.connected and state.disk == "UpToDate"):
            raise PrerequisiteError(
                f"refusing to promote {res.name}: connection {state.cstate}, "
                f"local disk {state.disk} (needs Connected and UpToDate, or force)",
                cstate=state.cstate,
                disk=state.disk,
            )
        self.drbdadm(res, "primary", *(["--force"] if force else []), res.name)
        return True

    def make_secondary(self, disk: DiskSpec) -> bool:
        res = self.resource(disk)
        if self.status(res).role != "Primary":
            return False
        self.drbdadm(res, "secondary", res.name)
        return True

    def skip_initial_sync(self, disk: DiskSpec) -> bool:
        """Declare a fresh, connected pair in sync without copying (both sides empty).

        Only valid while both copies are still Inconsistent: after any write, clearing
        the bitmap would hide real differences.
        """
        res = self.resource(disk)
        state = self.status(res)
        if state.disk == "UpToDate" and state.peer_disk == "UpToDate":
            return False
        if not (state.cstate == "Connected" and state.disk == state.peer_disk == "Inconsistent"):
            raise PrerequisiteError(
                f"cannot skip the initial sync of {res.name}: connection {state.cstate}, "
                f"disks {state.disk}/{state.peer_disk} (needs Connected, Inconsistent/"
                "Inconsistent)"
            )
        self.drbdadm(res, "new-current-uuid", "--clear-bitmap", f"{res.name}/0")
        return True

    def set_dual_primary(self, disk: DiskSpec, enabled: bool) -> bool:
        """Allow both nodes to be Primary (live migration) or go back to one.

        The kernel is changed before the setting is stored: DRBD refuses to forbid two
        primaries while it still sees both sides Primary, and a setting stored anyway
        would make the retry a no-op, leaving two primaries allowed for good.
        """
        res = self.resource(disk)
        if res.allow_two_primaries == enabled:
            return False
        if self.status(res).configured:
            value = "yes" if enabled else "no"
            self.drbdadm(res, "net-options", f"--allow-two-primaries={value}", res.name)
        flags = {**self._flags(res), "dual_primary": enabled}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / f"{res.name}.json").write_text(json.dumps(flags))
        self.write_config(DrbdResource(**{**res.__dict__, "allow_two_primaries": enabled}))
        return True

    # -- helpers -----------------------------------------------------------------------

    def _flags(self, res: DrbdResource) -> dict[str, Any]:
        try:
            flags: dict[str, Any] = json.loads((self.state_dir / f"{res.name}.json").read_text())
        except FileNotFoundError:
            return {}
        return flags

    def _create_md(self, res: DrbdResource, fresh: bool) -> bool:
        """Write metadata on a fresh meta LV, or on one where none is found; else keep it."""
        if not fresh:
            if self.status(res).configured:
                return False
            probe = self.drbdadm(res, "dump-md", res.name, check=False)
            if probe.returncode == 0:
                return False
            if "No valid meta data found" not in probe.stderr + probe.stdout:
                raise NodeError(
                    f"cannot tell whether {res.meta_dev} holds DRBD metadata: "
                    f"{probe.stderr.strip()}",
                    stderr=probe.stderr,
                )
        self.drbdadm(res, "--force", "create-md", res.name)
        return True

    def _up(self, res: DrbdResource) -> bool:
        if self.status(res).configured:
            self._converge(res, "adjust")
            return False
        self._converge(res, "up")
        return True

    def _converge(self, res: DrbdResource, command: str) -> None:
        """``drbdadm command``, then ``adjust`` while drbdadm reports a drbdsetup call that
        overran its few seconds: on a slow host (software-emulated guests under load) the
        call goes on or stops part-way, and ``adjust`` does what is still missing."""
        result = self.drbdadm(res, command, res.name, check=False)
        for _ in range(OVERRUN_RETRIES):
            if not _overran(result):
                break
            result = self.drbdadm(res, "adjust", res.name, check=False)
        if result.returncode != 0:
            raise command_error(result)

    def _down(self, res: DrbdResource) -> bool:
        if not self.conf_path(res).exists():
            return False
        state = self.status(res)
        if not state.configured:
            return False
        if state.role == "Primary":
            raise ConflictError(
                f"DRBD resource {res.name} is Primary here; demote it before shutting down"
            )
        self.drbdadm(res, "down", res.name)
        return True


def _overran(result: CommandResult) -> bool:
    return result.returncode == DRBDADM_CHILD_FAILED and "did not terminate within" in (
        result.stderr
    )


def _without_secret(text: str, secret: str) -> str:
    """``text`` with the secret hidden wherever drbdadm prints it as an option, whatever
    its length, and the secret itself cut out elsewhere by the rule of ``scrub``."""
    hidden: str = scrub(_SHARED_SECRET.sub(rf"\g<1>{REDACTED}", text), frozenset(), (secret,))
    return hidden


def list_drbd(
    runner: Runner = run_command, conf_dir: Path = CONF_DIR, proc_drbd: Path = PROC_DRBD
) -> list[dict[str, Any]]:
    """Herd's resource files and the kernel's configured devices, for ``cluster.verify``.

    Read-only: unlike ``version`` it never loads the module, and without it there are no
    devices.  DRBD 8.4 names no resources in /proc/drbd, so its devices are minors only.
    """
    found: list[dict[str, Any]] = [
        {"resource": path.stem, "minor": None, "source": "file", "path": str(path)}
        for path in sorted(conf_dir.glob("herd-*.res"))
    ]
    if not proc_drbd.exists():
        return found
    text = proc_drbd.read_text()
    devices: list[tuple[str | None, DrbdStatus]]
    if kernel_version(text)[0] == 8:
        devices = [(None, state) for state in parse_proc_drbd(text).values()]
    else:
        status = runner(["drbdsetup", "status", "--json"]).stdout
        devices = list(parse_status_json(status).items())
    found += [
        {"resource": name, "minor": state.minor, "source": "kernel"}
        for name, state in devices
        if state.configured
    ]
    return found
