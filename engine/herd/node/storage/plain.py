"""The ``plain`` disk template: one LVM logical volume per disk.

Every LVM call goes through one runner (``run_command``) so each has a timeout and a
failure always surfaces as a NodeError carrying the command and its stderr: an LVM
message ("Insufficient free space", "Volume group not found") is the only useful
diagnosis an operator gets from a remote node.  Reports are read with
``--reportformat json --units b --nosuffix`` because byte counts are exact and the JSON
does not change with locale or column widths.

New volumes are created with ``--wipesignatures y --zero y``: LVM hands out extents that
may still hold an old filesystem or DRBD superblock, and a guest (or ``drbdadm``) that
finds a stale signature on a "new" disk would act on someone else's data.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from herd.errors import ConflictError, NodeError, NotFoundError, ValidationError
from herd.node.actions.registry import NodeContext
from herd.node.storage.base import DiskSpec, StorageBackend, register_backend

MIB = 1024 * 1024
DEFAULT_VG = "herd"
#: LVM's own rule for VG and LV names (lvm(8), "VALID NAMES"), without a leading dash.
_LVM_NAME = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}")
DEFAULT_TIMEOUT = 120.0
#: LVM complains about every inherited descriptor on stderr; that noise would bury the
#: real error in NodeError messages.
LVM_ENV = {"LVM_SUPPRESS_FD_WARNINGS": "1"}


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[..., CommandResult]


def run_command(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run ``argv`` without a shell; a failure or timeout is a NodeError with stderr.

    ``check=False`` returns failing results too, for callers that tell "missing" from
    "broken" by the exit code.
    """
    full_env = {**os.environ, "LC_ALL": "C", **(env or {})}
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise NodeError(
            f"{argv[0]} timed out after {timeout:g} s: {' '.join(argv)}",
            command=list(argv),
            timeout=timeout,
        ) from exc
    except FileNotFoundError as exc:
        raise NodeError(f"{argv[0]} is not installed on this node", command=list(argv)) from exc
    result = CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise command_error(result)
    return result


def command_error(result: CommandResult) -> NodeError:
    """The NodeError for a failed command: the command line, exit code and its stderr."""
    stderr = result.stderr.strip()
    return NodeError(
        f"{' '.join(result.argv)} failed with exit code {result.returncode}: "
        f"{stderr or result.stdout.strip() or '(no output)'}",
        command=list(result.argv),
        returncode=result.returncode,
        stderr=stderr,
    )


def lvm_name(field: str, value: Any) -> str:
    """A VG or LV name LVM accepts; refused before it reaches a command line."""
    if not isinstance(value, str) or not _LVM_NAME.fullmatch(value) or value in (".", ".."):
        raise ValidationError(field, value, "an LVM name: letters, digits and +_.- (max 127)")
    return value


def report_rows(stdout: str, kind: str) -> list[dict[str, str]]:
    """Rows of an ``lvs``/``vgs --reportformat json`` report (``kind`` is "lv" or "vg")."""
    try:
        data = json.loads(stdout)
        rows = [row for report in data["report"] for row in report.get(kind, [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise NodeError(f"unreadable LVM {kind} report: {stdout[:200]!r}") from exc
    return rows


@dataclass(frozen=True)
class Volume:
    vg: str
    lv: str
    size_bytes: int
    attr: str

    @property
    def path(self) -> str:
        return f"/dev/{self.vg}/{self.lv}"

    @property
    def active(self) -> bool:
        """Fifth lv_attr character: 'a' means the device-mapper node exists."""
        return len(self.attr) > 4 and self.attr[4] == "a"


class LVM:
    """The few LVM commands Herd needs, with exact sizes; shared by plain and drbd."""

    def __init__(self, runner: Runner = run_command) -> None:
        self.run = runner

    def _lvm(self, *argv: str, check: bool = True) -> CommandResult:
        return self.run(list(argv), check=check, env=LVM_ENV)

    def volume(self, vg: str, lv: str) -> Volume | None:
        """The volume, or None if it does not exist; a missing VG is a NotFoundError."""
        result = self._lvm(
            "lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
            "-o", "vg_name,lv_name,lv_size,lv_attr", "--select", f"lv_name={lv}", vg,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            if "not found" in result.stderr:
                raise NotFoundError(f"volume group {vg} does not exist on this node", vg=vg)
            raise command_error(result)
        for row in report_rows(result.stdout, "lv"):
            if row.get("lv_name") == lv:
                return Volume(vg, lv, int(row["lv_size"]), row.get("lv_attr", ""))
        return None

    def volumes(self, vg: str) -> list[Volume]:
        """Every volume of ``vg``; a missing VG, or no LVM on this node, holds none."""
        try:
            result = self._lvm(
                "lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
                "-o", "vg_name,lv_name,lv_size,lv_attr", vg,
                check=False,
            )  # fmt: skip
        except NodeError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                return []
            raise
        if result.returncode != 0:
            if "not found" in result.stderr:
                return []
            raise command_error(result)
        return [
            Volume(vg, row["lv_name"], int(row["lv_size"]), row.get("lv_attr", ""))
            for row in report_rows(result.stdout, "lv")
        ]

    def create(self, vg: str, lv: str, size_mib: int) -> bool:
        """Create ``vg/lv``; an existing one of this size is success, another size a conflict."""
        existing = self.volume(vg, lv)
        if existing is not None:
            if existing.size_bytes != size_mib * MIB:
                raise ConflictError(
                    f"logical volume {vg}/{lv} exists with {existing.size_bytes} bytes, "
                    f"not the requested {size_mib} MiB",
                    vg=vg,
                    lv=lv,
                    size_bytes=existing.size_bytes,
                    size_mib=size_mib,
                )
            return False
        self._lvm(
            "lvcreate", "--yes", "--wipesignatures", "y", "--zero", "y",
            "-L", f"{size_mib}m", "-n", lv, vg,
        )  # fmt: skip
        return True

    def remove(self, vg: str, lv: str) -> bool:
        if self.volume(vg, lv) is None:
            return False
        self._lvm("lvremove", "--yes", f"{vg}/{lv}")
        return True

    def extend(self, vg: str, lv: str, size_mib: int) -> bool:
        """Grow to ``size_mib``; equal is a no-op, smaller a ValidationError (never shrink)."""
        existing = self.require(vg, lv)
        if size_mib * MIB < existing.size_bytes:
            raise ValidationError(
                "size_mib",
                size_mib,
                f"at least the current {existing.size_bytes // MIB} MiB (never shrink)",
            )
        if size_mib * MIB == existing.size_bytes:
            return False
        self._lvm("lvextend", "-L", f"{size_mib}m", f"{vg}/{lv}")
        return True

    def activate(self, vg: str, lv: str) -> bool:
        if self.require(vg, lv).active:
            return False
        self._lvm("lvchange", "-ay", f"{vg}/{lv}")
        return True

    def deactivate(self, vg: str, lv: str) -> bool:
        existing = self.volume(vg, lv)
        if existing is None or not existing.active:
            return False
        self._lvm("lvchange", "-an", f"{vg}/{lv}")
        return True

    def require(self, vg: str, lv: str) -> Volume:
        existing = self.volume(vg, lv)
        if existing is None:
            raise NotFoundError(f"logical volume {vg}/{lv} does not exist", vg=vg, lv=lv)
        return existing

    def space(self, vg: str) -> dict[str, int]:
        result = self._lvm(
            "vgs", "--reportformat", "json", "--units", "b", "--nosuffix",
            "-o", "vg_name,vg_size,vg_free", vg,
            check=False,
        )  # fmt: skip
        rows = report_rows(result.stdout, "vg") if result.returncode == 0 else []
        if not rows:
            if "not found" in result.stderr:
                raise NotFoundError(f"volume group {vg} does not exist on this node", vg=vg)
            raise command_error(result)
        return {
            "total_mib": int(rows[0]["vg_size"]) // MIB,
            "free_mib": int(rows[0]["vg_free"]) // MIB,
        }


def volume_group(disk: DiskSpec) -> str:
    """``params.vg``, else the filled-in ``params.vg_name`` diskparam, else "herd"."""
    if "vg" in disk.params:
        return lvm_name("disk.params.vg", disk.params["vg"])
    return lvm_name("disk.params.vg_name", disk.params.get("vg_name", DEFAULT_VG))


@register_backend
class PlainStorage(StorageBackend):
    """One LV per disk, named ``params.lv`` or ``<disk-uuid>.disk<index>`` as in Ganeti."""

    template = "plain"

    def __init__(
        self, ctx: NodeContext, runner: Runner = run_command, default_vg: str = DEFAULT_VG
    ) -> None:
        super().__init__(ctx)
        self.lvm = LVM(runner)
        self.default_vg = lvm_name("vg", default_vg)

    def locate(self, disk: DiskSpec) -> tuple[str, str]:
        lv = disk.params.get("lv", f"{disk.uuid}.disk{disk.index}")
        return volume_group(disk), lvm_name("disk.params.lv", lv)

    def create(self, disk: DiskSpec) -> bool:
        return self.lvm.create(*self.locate(disk), disk.size_mib)

    def remove(self, disk: DiskSpec) -> bool:
        return self.lvm.remove(*self.locate(disk))

    def grow(self, disk: DiskSpec, new_size_mib: int) -> bool:
        return self.lvm.extend(*self.locate(disk), new_size_mib)

    def assemble(self, disk: DiskSpec) -> dict[str, Any]:
        vg, lv = self.locate(disk)
        self.lvm.activate(vg, lv)
        return {"path": f"/dev/{vg}/{lv}"}

    def shutdown(self, disk: DiskSpec) -> bool:
        return self.lvm.deactivate(*self.locate(disk))

    def info(self, disk: DiskSpec) -> dict[str, Any]:
        vg, lv = self.locate(disk)
        found = self.lvm.volume(vg, lv)
        if found is None:
            return {"exists": False, "path": f"/dev/{vg}/{lv}", "size_mib": None,
                    "allocated_mib": None, "attached": False}  # fmt: skip
        return {
            "exists": True,
            "path": found.path,
            "size_mib": found.size_bytes // MIB,
            "allocated_mib": found.size_bytes // MIB,
            "attached": found.active,
        }

    def space(self) -> dict[str, int]:
        return self.lvm.space(self.default_vg)


#: The names Herd gives LVs: plain ``<disk uuid>.disk<N>``; drbd ``<disk uuid>.disk<N>_data``
#: and ``_meta`` (assigned by the master) or ``herd-<disk uuid>.data``/``.meta`` (the
#: node's default).  Other volumes in the group are not Herd's to report.
HERD_LV = re.compile(r"[0-9a-f-]{36}\.disk\d+(?:_data|_meta)?|herd-[0-9a-f-]{36}\.(?:data|meta)")


def list_volumes(vgs: list[str], runner: Runner = run_command) -> list[dict[str, Any]]:
    """Herd-named LVs in ``vgs``, for ``cluster.verify`` to compare with the config."""
    lvm = LVM(runner)
    return [
        {"vg": v.vg, "lv": v.lv, "size_mib": v.size_bytes // MIB}
        for vg in vgs
        for v in lvm.volumes(lvm_name("vgs", vg))
        if HERD_LV.fullmatch(v.lv)
    ]
