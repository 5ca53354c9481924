"""Export actions: instance backups as stream files on a node, and restores from them.

An export is a directory ``<root>/export/<instance name>/`` holding one transfer stream
file per disk (``disk<N>.stream``, the format of ``herd.node.transfer.stream``: zero
extents skipped, compressed, ending with the content digest) and ``manifest.json``, the
instance description the master wrote.  A disk can be gigabytes, so every stream runs as a
background end of the transfer worker (roles ``export``, ``import``, ``digest``) and the
master polls ``export_status``, exactly as it does for node-to-node transfers.

Exports are built in a work directory ``<root>/export/.work-<token>/`` and only renamed
into place by ``export_commit``, once every stream finished and was verified: a failed or
killed export never leaves a directory that ``export_list`` would report, and a re-export
that fails keeps the previous, complete export.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from herd.errors import NotFoundError, TransferError, ValidationError
from herd.node.actions.registry import NodeContext, action
from herd.node.actions.transfer import TRANSFER_ID
from herd.node.transfer import worker
from herd.node.transfer.codecs import get_codec

#: An export's name becomes a directory name: one path component, never hidden or special.
EXPORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
MANIFEST = "manifest.json"
WORK_PREFIX = ".work-"


def exports_dir(ctx: NodeContext) -> Path:
    return ctx.root / "export"


def stream_file(index: int) -> str:
    return f"disk{index}.stream"


def _check_name(name: str) -> None:
    if not EXPORT_NAME.match(name):
        raise ValidationError("name", name, "an instance name (letters, digits, '.', '_', '-')")


def _check_token(field: str, token: str) -> None:
    if not TRANSFER_ID.match(token):
        raise ValidationError(field, token, "a DNS label (letters, digits, '-')")


def _work_dir(ctx: NodeContext, token: str) -> Path:
    _check_token("token", token)
    return exports_dir(ctx) / f"{WORK_PREFIX}{token}"


def list_work_dirs(ctx: NodeContext) -> list[dict[str, Any]]:
    """Work directories of unfinished exports, for ``cluster.verify``: a committed or
    discarded export leaves none, so any found while no job runs was abandoned."""
    base = exports_dir(ctx)
    return [
        {"token": d.name.removeprefix(WORK_PREFIX), "path": str(d)}
        for d in (sorted(base.glob(f"{WORK_PREFIX}*")) if base.is_dir() else [])
    ]


def _file_end(ctx: NodeContext, transfer_id: str, role: str) -> Path:
    _check_token("transfer_id", transfer_id)
    if role not in worker.FILE_ROLES:
        raise ValidationError("role", role, " or ".join(worker.FILE_ROLES))
    return worker.transfer_dir(ctx.root, transfer_id, role)


def _start(ctx: NodeContext, request: dict[str, Any]) -> dict[str, Any]:
    get_codec(request["compression"])
    directory = _file_end(ctx, request["transfer_id"], request["role"])
    return {"changed": worker.start(directory, request, {})}


@action("export_begin")
def export_begin(ctx: NodeContext, token: str) -> dict[str, Any]:
    """Create the work directory of one export (or of a restore's scratch copies)."""
    work = _work_dir(ctx, token)
    changed = not work.exists()
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    return {"changed": changed, "path": str(work)}


@action("export_discard")
def export_discard(ctx: NodeContext, token: str) -> dict[str, Any]:
    """Remove a work directory and everything in it: the rollback of ``export_begin``."""
    work = _work_dir(ctx, token)
    if not work.exists():
        return {"changed": False}
    shutil.rmtree(work)
    return {"changed": True}


@action("export_disk_start")
def export_disk_start(
    ctx: NodeContext,
    transfer_id: str,
    token: str,
    index: int,
    source_path: str,
    compression: str = "none",
) -> dict[str, Any]:
    """Write disk ``index``'s stream file into the work directory, in the background."""
    work = _work_dir(ctx, token)
    if not work.is_dir():
        raise NotFoundError(f"no export work directory {work}", token=token)
    if index < 0:
        raise ValidationError("index", index, "a disk index >= 0")
    if not os.path.exists(source_path):
        raise NotFoundError(f"source {source_path} does not exist", field="source_path")
    return _start(
        ctx,
        {
            "role": "export",
            "transfer_id": transfer_id,
            "source_path": source_path,
            "stream_path": str(work / stream_file(index)),
            "compression": compression,
        },
    )


@action("disk_digest_start")
def disk_digest_start(ctx: NodeContext, transfer_id: str, source_path: str) -> dict[str, Any]:
    """Compute a disk's content digest (the one an export records) in the background.

    It reads only the disk's data, so comparing a disk with its export costs a fraction of
    re-exporting it.
    """
    if not os.path.exists(source_path):
        raise NotFoundError(f"source {source_path} does not exist", field="source_path")
    return _start(
        ctx,
        {
            "role": "digest",
            "transfer_id": transfer_id,
            "source_path": source_path,
            "compression": "none",
        },
    )


@action("import_disk_start")
def import_disk_start(
    ctx: NodeContext,
    transfer_id: str,
    name: str,
    index: int,
    dest_path: str,
    size_mib: int,
    compression: str = "none",
) -> dict[str, Any]:
    """Restore disk ``index`` of export ``name`` onto ``dest_path``, verifying its digest."""
    _check_name(name)
    stream = exports_dir(ctx) / name / stream_file(index)
    if not stream.is_file():
        raise NotFoundError(f"export {name} has no stream file for disk {index}", name=name)
    if not os.path.isabs(dest_path):
        raise ValidationError("dest_path", dest_path, "an absolute path")
    if size_mib <= 0:
        raise ValidationError("size_mib", size_mib, "MiB > 0")
    return _start(
        ctx,
        {
            "role": "import",
            "transfer_id": transfer_id,
            "stream_path": str(stream),
            "dest_path": dest_path,
            "size_mib": size_mib,
            "compression": compression,
        },
    )


@action("export_status")
def export_status(ctx: NodeContext, transfer_id: str, role: str) -> dict[str, Any]:
    """Progress of a file end, in the shape of ``transfer_status`` (the master's poller
    and progress reports serve both)."""
    st = worker.status(_file_end(ctx, transfer_id, role))
    keys = ("state", "role", "size", "bytes", "data_bytes", "wire_bytes", "rate", "eta")
    return {
        "changed": False,
        **{k: st.get(k) for k in keys},
        "digest": st.get("digest"),
        "error": st.get("error"),
    }


@action("export_abort")
def export_abort(ctx: NodeContext, transfer_id: str, role: str) -> dict[str, Any]:
    """Stop a file end; an unfinished export's stream file is removed. Unknown: no-op."""
    return {"changed": worker.abort(_file_end(ctx, transfer_id, role))}


@action("export_commit")
def export_commit(
    ctx: NodeContext, token: str, name: str, manifest: dict[str, Any]
) -> dict[str, Any]:
    """Publish a finished work directory as export ``name``, replacing an older one.

    The old export is moved aside before the new one takes its name and deleted after, so
    at every instant the name holds one complete export.
    """
    _check_name(name)
    work = _work_dir(ctx, token)
    final = exports_dir(ctx) / name
    if not work.exists():
        if worker.read_json(final / MANIFEST) == manifest:
            return {"changed": False, "path": str(final)}
        raise NotFoundError(f"no export work directory {work}", token=token)
    disks = manifest.get("disks")
    if not isinstance(disks, list):
        raise ValidationError("manifest.disks", disks, "a list of disks")
    missing = [i for i in range(len(disks)) if not (work / stream_file(i)).is_file()]
    if missing:
        raise TransferError(f"export {name} lacks the stream of disk(s) {missing}", name=name)
    for scratch in work.glob("*.img"):
        scratch.unlink()
    (work / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    old = exports_dir(ctx) / f".old-{token}"
    if final.exists():
        final.rename(old)
    work.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return {"changed": True, "path": str(final)}


def _describe(directory: Path) -> dict[str, Any] | None:
    manifest = worker.read_json(directory / MANIFEST)
    if manifest is None:
        return None
    files = [directory / stream_file(i) for i in range(len(manifest.get("disks") or []))]
    return {
        **manifest,
        "path": str(directory),
        "stream_bytes": sum(f.stat().st_size for f in files if f.exists()),
    }


@action("export_list")
def export_list(ctx: NodeContext, names: list[str] | None = None) -> dict[str, Any]:
    """The complete exports on this node (work directories are not exports yet)."""
    for name in names or []:
        _check_name(name)
    base = exports_dir(ctx)
    wanted = set(names) if names is not None else None
    found = []
    if base.is_dir():
        for entry in sorted(base.iterdir()):
            if entry.name.startswith(".") or (wanted is not None and entry.name not in wanted):
                continue
            described = _describe(entry)
            if described is not None:
                found.append(described)
    return {"changed": False, "exports": found}


@action("export_remove")
def export_remove(ctx: NodeContext, name: str) -> dict[str, Any]:
    _check_name(name)
    final = exports_dir(ctx) / name
    if not final.exists():
        return {"changed": False}
    shutil.rmtree(final)
    return {"changed": True}
