"""Disk images in and out of an instance through its OS's import and export scripts.

These take file objects rather than paths so the transfer layer can hand over a socket,
a pipe to a compressor or an encrypted stream without the OS layer knowing which: the
export script writes the image to its stdout, the import script reads it on stdin,
exactly as the Ganeti OS API defines them (one run per disk).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from herd.errors import ValidationError
from herd.node.os.api import prepare
from herd.node.os.runner import ScriptResult, log_path, run_script


def export_disk(
    root: Path,
    spec: dict[str, Any],
    disk_paths: Sequence[str],
    index: int,
    dest: IO[bytes],
    timeout: float | None = None,
    debug: int = 0,
) -> ScriptResult:
    """Write disk ``index``'s image, as the OS's export script makes it, to ``dest``.

    ``predicted_size`` in the result is what the script announced on EXP_SIZE_FD (for
    progress estimates), None if it did not.  ``timeout`` is left to the caller because
    only the transfer layer knows how long a disk of this size may take.
    """
    return _run_disk_script("export", root, spec, disk_paths, index, timeout, debug, dest=dest)


def import_disk(
    root: Path,
    spec: dict[str, Any],
    disk_paths: Sequence[str],
    index: int,
    source: IO[bytes],
    timeout: float | None = None,
    debug: int = 0,
) -> ScriptResult:
    """Feed ``source`` (an image made by the same OS's export) to the import script."""
    return _run_disk_script("import", root, spec, disk_paths, index, timeout, debug, src=source)


def _run_disk_script(
    script: str,
    root: Path,
    spec: dict[str, Any],
    disk_paths: Sequence[str],
    index: int,
    timeout: float | None,
    debug: int,
    src: IO[bytes] | None = None,
    dest: IO[bytes] | None = None,
) -> ScriptResult:
    definition, env = prepare(root, spec, disk_paths, debug)
    count = int(env["DISK_COUNT"])
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ValidationError("index", index, f"a disk index 0..{count - 1}")
    prefix = script.upper()
    path = env[f"DISK_{index}_PATH"]
    env.update(
        {
            f"{prefix}_INDEX": str(index),
            f"{prefix}_DISK_PATH": path,
            f"{prefix}_DEVICE": path,
        }
    )
    log = log_path(root, env["INSTANCE_NAME"], f"{script}{index}")
    return run_script(
        definition, script, env, log, timeout, stdin=src, stdout=dest, size_fd=dest is not None
    )
