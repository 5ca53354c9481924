"""Transfers as detached background processes, and the bookkeeping the node actions use.

A disk stream runs for minutes while node calls are request/response, so each end of a
transfer is a process of its own (``python -m herd.node.transfer.worker DIR``), detached
from the agent session that started it.  Everything about one end lives in
``<root>/transfers/<transfer id>/<role>/``:

* ``request.json``: the validated parameters (and whether the destination pre-existed),
  written before the process starts, so a replayed start call can be compared with it;
* ``cert.pem``/``key.pem``/``ca.pem``: the per-transfer credentials; the worker deletes
  the key as soon as its TLS context holds it;
* ``status.json``: the worker's published progress (see ``progress``);
* ``lock``: held (``flock``) by the worker for exactly its lifetime.  The action takes
  the lock, then hands the locked descriptor to the child, so "running" is true from the
  first instant and a recycled pid can never pass for our worker;
* ``process.json`` (pid) and ``worker.log`` (stderr).

Role directories keep both ends of a same-node transfer apart.  Besides the two network
ends there are *file* ends, which run the same way but stream between a disk and a file on
this node: ``export`` (disk to stream file, a backup), ``import`` (stream file to disk) and
``digest`` (the content digest of a disk, without writing anything).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from herd.crypto.tls import client_context, server_context
from herd.errors import ConflictError, NotFoundError, TransferError
from herd.node import proc
from herd.node.transfer import net
from herd.node.transfer.codecs import get_codec
from herd.node.transfer.progress import Progress
from herd.node.transfer.stream import Result, error_dict, export_disk, import_disk, send_stream
from herd.redact import cut_key_material

ROLES = ("receive", "send")
FILE_ROLES = ("export", "import", "digest")
MIB = 1024 * 1024
LISTEN_FD = 3
LOCK_FD = 4
TERM_GRACE = 5.0
WORKER_MODULE = "herd.node.transfer.worker"


def transfer_dir(root: Path, transfer_id: str, role: str) -> Path:
    return root / "transfers" / transfer_id / role


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any], mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def alive(directory: Path) -> bool:
    """Whether the worker of ``directory`` still runs: its lock is held."""
    try:
        fd = os.open(directory / "lock", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def start(
    directory: Path,
    request: dict[str, Any],
    secrets: dict[str, str],
    listener: socket.socket | None = None,
) -> bool:
    """Start the worker for ``request`` unless this very request already started.

    Returns whether a process was started.  The same transfer id with other parameters
    is a ConflictError: silently reusing it would send or overwrite the wrong disk.
    """
    existing = read_json(directory / "request.json")
    if existing is not None:
        compare = {k: v for k, v in existing.items() if k != "dest_existed"}
        if compare != request:
            changed = sorted(k for k in request if compare.get(k) != request[k])
            raise ConflictError(
                f"transfer {request['transfer_id']} ({request['role']}) already exists "
                f"with other parameters: {', '.join(changed)}",
                transfer_id=request["transfer_id"],
                fields=changed,
            )
        return False
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for name, pem in secrets.items():
        _write_text(directory / name, pem)
    if request["role"] == "receive":
        request = {**request, "dest_existed": os.path.exists(request["dest_path"])}
    _write_json(directory / "request.json", request)
    lock = _high_fd(os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    log = _high_fd(os.open(directory / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    listen = _high_fd(os.dup(listener.fileno())) if listener is not None else None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log, 1),
            (os.POSIX_SPAWN_DUP2, log, 2),
            (os.POSIX_SPAWN_DUP2, lock, LOCK_FD),
        ]
        if listen is not None:
            actions.append((os.POSIX_SPAWN_DUP2, listen, LISTEN_FD))
        argv = [sys.executable, "-m", WORKER_MODULE, str(directory)]
        pid = os.posix_spawn(sys.executable, argv, os.environ, file_actions=actions, setsid=True)
    finally:
        for fd in (lock, log, listen):
            if fd is not None:
                os.close(fd)
    _write_json(directory / "process.json", {"pid": pid, "started": time.time()})
    return True


def _high_fd(fd: int) -> int:
    """Move ``fd`` above the numbers the child expects, so no DUP2 clobbers another source.

    In an agent session the listener or the lock may well be fd 3 or 4 themselves.
    """
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


def _write_text(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def status(directory: Path) -> dict[str, Any]:
    """The end's published status, corrected by whether its process still runs.

    A worker killed outright cannot publish its own failure; a dead worker whose status
    still says "running" is reported failed.
    """
    request = read_json(directory / "request.json")
    if request is None:
        raise NotFoundError(f"no transfer in {directory}", path=str(directory))
    published = read_json(directory / "status.json") or {
        "role": request["role"],
        "state": "running",
        "bytes": 0,
        "data_bytes": 0,
        "wire_bytes": 0,
        "rate": 0.0,
        "eta": None,
        "error": None,
    }
    if published.get("state") == "running" and not alive(directory):
        published = {
            **published,
            "state": "failed",
            "error": TransferError(
                "transfer worker exited without reporting a result",
                log=_log_tail(directory),
            ).to_dict(),
        }
    return published


def list_ends(root: Path) -> list[dict[str, Any]]:
    """Every transfer end on this node, for ``cluster.verify``: each directory under
    ``<root>/transfers`` (its published state, whether its worker runs) and every worker
    process whose directory is gone.  ``state`` None means the end never published one."""
    workers = {
        Path(argv[-1]): pid
        for pid, argv in proc.own_processes()
        if proc.python_module(argv) == WORKER_MODULE
    }
    base = root / "transfers"
    ends = []
    for tdir in sorted(base.iterdir()) if base.is_dir() else []:
        for directory in sorted(d for d in tdir.iterdir() if d.is_dir()) or [tdir]:
            request = read_json(directory / "request.json") or {}
            published = read_json(directory / "status.json") or {}
            running = alive(directory)
            ends.append(
                {
                    "transfer_id": tdir.name,
                    "role": None if directory == tdir else directory.name,
                    "path": str(directory),
                    "state": published.get("state"),
                    "alive": running,
                    "pid": workers.pop(directory, None) if running else None,
                    "port": request.get("port"),
                }
            )
    ends += [
        {"transfer_id": d.parent.name, "role": d.name, "path": str(d), "state": None,
         "alive": True, "pid": pid, "port": None}
        for d, pid in sorted(workers.items())
        if str(d).startswith(f"{base}/")
    ]  # fmt: skip
    return ends


def _log_tail(directory: Path) -> str:
    """The end of worker.log for an error sent to the master, scrubbed once more: the log
    also holds what the worker did not write itself (the interpreter's own messages),
    and the key those might quote is gone by now: only its armour still finds it."""
    try:
        tail = (directory / "worker.log").read_text(errors="replace")[-500:]
    except FileNotFoundError:
        return ""
    return cut_key_material(tail)


def abort(directory: Path) -> bool:
    """Stop the worker and undo a receiver's partial destination; True if anything changed.

    A finished receiver's disk is complete and verified, so it is never touched.  The
    worker gets SIGTERM (it then discards the destination itself) and SIGKILL after a
    grace period; the cleanup is repeated here because a killed worker cannot do it.
    """
    request = read_json(directory / "request.json")
    if request is None:
        return False
    changed = False
    proc = read_json(directory / "process.json") or {}
    pid = proc.get("pid")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive(directory) or not isinstance(pid, int):
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
            changed = True
        deadline = time.monotonic() + TERM_GRACE
        while alive(directory) and time.monotonic() < deadline:
            time.sleep(0.02)
    with contextlib.suppress(ChildProcessError, TypeError):
        os.waitpid(pid, os.WNOHANG)  # type: ignore[arg-type]
    current = read_json(directory / "status.json") or {}
    if current.get("state") == "done":
        return changed
    made = _created_file(request)
    if made is not None and made.exists():
        made.unlink()
        changed = True
    if current.get("state") != "failed" or changed:
        err = TransferError(f"transfer {request['transfer_id']} aborted").to_dict()
        _write_json(directory / "status.json", {**current, "state": "failed", "error": err})
        changed = True
    (directory / "key.pem").unlink(missing_ok=True)
    return changed


def _created_file(request: dict[str, Any]) -> Path | None:
    """The file this end creates, which an unfinished end must not leave half-written."""
    if request["role"] == "receive" and not request.get("dest_existed"):
        return Path(request["dest_path"])
    if request["role"] == "export":
        return Path(request["stream_path"])
    return None


def _run_file(request: dict[str, Any], progress: Progress) -> Result:
    """A file end: the stream functions themselves, with this end's progress file."""
    role = request["role"]
    if role == "export":
        return export_disk(
            request["source_path"], request["stream_path"], request["compression"], progress
        )
    if role == "import":
        return import_disk(
            request["stream_path"],
            request["dest_path"],
            request["compression"],
            request["size_mib"] * MIB,
            progress,
        )
    return send_stream(request["source_path"], _discard, get_codec("none"), progress)


def _discard(data: bytes) -> None:
    """Sink of a digest end: the stream is produced only for the digest it ends with."""


def _run(directory: Path) -> int:
    """Run the end; every failure, even before the status file exists, is reported once,
    scrubbed, rather than left to Python's traceback on stderr (that is worker.log)."""
    secrets = _known_secrets(directory)
    progress: Progress | None = None
    try:
        request = read_json(directory / "request.json")
        if request is None:
            raise TransferError(f"no request in {directory}")
        progress = Progress(
            request["role"],
            status_path=directory / "status.json",
            extra={"transfer_id": request["transfer_id"], "compression": request["compression"]},
        )
        progress.publish()
        if request["role"] in FILE_ROLES:
            result = _run_file(request, progress)
        else:
            result = _run_net(directory, request, progress)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the status file
        error = error_dict(exc, secrets)
        if progress is not None:
            progress.finish("failed", error=error)
        print(f"transfer failed: {error['message']}", file=sys.stderr)
        return 1
    progress.finish("done", digest=result.digest)
    return 0


def _known_secrets(directory: Path) -> list[str]:
    """This end's private key, read before TLS takes it (the file goes then), whole and
    line by line: a library that cannot parse a key may quote a line without the PEM
    armour that :func:`herd.redact.cut_key_material` recognises."""
    try:
        text = (directory / "key.pem").read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [text, *(line.strip() for line in text.splitlines() if "-----" not in line)]


def _run_net(directory: Path, request: dict[str, Any], progress: Progress) -> Result:
    """A network end: TLS with this transfer's credentials, then send or receive."""
    codec = get_codec(request["compression"])
    make = server_context if request["role"] == "receive" else client_context
    context = make(
        (directory / "ca.pem").read_text(),
        directory / "cert.pem",
        directory / "key.pem",
        ciphers=request["ciphers"],
    )
    (directory / "key.pem").unlink()
    common = {
        "transfer_id": request["transfer_id"],
        "codec": codec,
        "progress": progress,
        "connect_timeout": request["connect_timeout"],
        "stall_timeout": request["stall_timeout"],
    }
    if request["role"] == "receive":
        listener = socket.socket(fileno=LISTEN_FD)
        return net.receive(
            listener,
            context,
            dest_path=request["dest_path"],
            capacity=request["size_mib"] * MIB,
            **common,
        )
    return net.send(
        request["source_path"],
        context,
        host=request["dest_ip"],
        port=request["port"],
        bandwidth_limit=request["bandwidth_limit"],
        **common,
    )


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM unwinds like an error, so the receiver's cleanup runs before exit."""
    raise TransferError(f"transfer worker stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m herd.node.transfer.worker DIR", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    return _run(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
