"""Small-file actions confined to the node's state directory.

The master writes node-side config (DRBD resources, instance metadata, certificates)
through these, so they refuse any path outside the state root, even through symlinks
or ``..``: a bug or a hostile request must not be able to overwrite /etc/shadow.
Writes are atomic (temporary file, fsync, rename) so a crash leaves the old or the new
file, never half of one, and a replayed write of the same content changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from herd.errors import NotFoundError, ValidationError
from herd.node.actions.registry import NodeContext, action

ENCODINGS = ("utf-8", "base64")
MAX_FILE_BYTES = 32 * 1024 * 1024
DIR_MODE = 0o755


@action("write_file")
def write_file(
    ctx: NodeContext, path: str, content: str, encoding: str = "utf-8", mode: int = 0o644
) -> dict[str, Any]:
    """Make ``path`` hold exactly ``content`` with ``mode``; unchanged files are not rewritten."""
    target = resolve(ctx, path)
    data = _decode(content, encoding)
    if not 0 <= mode <= 0o7777:
        raise ValidationError("mode", mode, "a permission mode 0..0o7777")
    current = _read_existing(target)
    if current is not None and current == data:
        if stat.S_IMODE(target.stat().st_mode) == mode:
            return _describe(target, data, changed=False)
        os.chmod(target, mode)
        return _describe(target, data, changed=True)
    target.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _atomic_write(target, data, mode)
    return _describe(target, data, changed=True)


@action("read_file")
def read_file(ctx: NodeContext, path: str, encoding: str = "utf-8") -> dict[str, Any]:
    """Content and checksum of a file under the state root; NotFoundError if it is missing."""
    target = resolve(ctx, path)
    if encoding not in ENCODINGS:
        raise ValidationError("encoding", encoding, f"one of {list(ENCODINGS)}")
    data = _read_existing(target)
    if data is None:
        raise NotFoundError(f"file {path} does not exist on the node", path=path)
    if encoding == "utf-8":
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError("encoding", encoding, "base64 for binary content") from exc
    else:
        content = base64.b64encode(data).decode("ascii")
    return {**_describe(target, data, changed=False), "content": content, "encoding": encoding}


@action("remove_file")
def remove_file(ctx: NodeContext, path: str) -> dict[str, Any]:
    """Make sure ``path`` does not exist; removing a missing file is success, not an error."""
    target = resolve(ctx, path)
    if target.is_dir() and not target.is_symlink():
        raise ValidationError("path", path, "a file, not a directory")
    try:
        target.unlink()
    except FileNotFoundError:
        return {"changed": False, "path": str(target)}
    _fsync_dir(target.parent)
    return {"changed": True, "path": str(target)}


@action("check_files")
def check_files(ctx: NodeContext, paths: list[str]) -> dict[str, Any]:
    """sha256 of each path (null when missing), so the master can verify without reading."""
    files: dict[str, str | None] = {}
    for i, path in enumerate(paths):
        data = _read_existing(resolve(ctx, path, field=f"paths[{i}]"))
        files[path] = None if data is None else hashlib.sha256(data).hexdigest()
    return {"changed": False, "files": files}


def resolve(ctx: NodeContext, path: str, field: str = "path") -> Path:
    """Absolute path of ``path`` (relative to the root, or absolute inside it).

    Symlinks in the parents are resolved before the containment check; a final symlink
    must point inside the root too, so neither can be used to escape.
    """
    root = ctx.root.resolve()
    raw = Path(path)
    if not path or "\x00" in path or raw.name in ("", ".", ".."):
        raise ValidationError(field, path, f"a file path under {root}")
    candidate = raw if raw.is_absolute() else root / raw
    target = candidate.parent.resolve() / candidate.name
    for check in (target, target.resolve()):
        if root not in check.parents:
            raise ValidationError(field, path, f"a file path under {root}")
    return target


def _decode(content: str, encoding: str) -> bytes:
    if encoding == "utf-8":
        data = content.encode("utf-8")
    elif encoding == "base64":
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValidationError("content", content[:40], "valid base64") from exc
    else:
        raise ValidationError("encoding", encoding, f"one of {list(ENCODINGS)}")
    if len(data) > MAX_FILE_BYTES:
        raise ValidationError("content", f"{len(data)} bytes", f"at most {MAX_FILE_BYTES} bytes")
    return data


def _read_existing(target: Path) -> bytes | None:
    try:
        with open(target, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except IsADirectoryError as exc:
        raise ValidationError("path", str(target), "a file, not a directory") from exc
    if len(data) > MAX_FILE_BYTES:
        raise ValidationError("path", str(target), f"a file of at most {MAX_FILE_BYTES} bytes")
    return data


def _atomic_write(target: Path, data: bytes, mode: int) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename or unlink durable: without it a power cut can undo it."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(target: Path, data: bytes, changed: bool) -> dict[str, Any]:
    return {
        "changed": changed,
        "path": str(target),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "mode": stat.S_IMODE(target.stat().st_mode),
    }
