"""Running OS scripts: clean environment, timeout, log file, stdin/stdout streams.

Each run gets its own log under ``<root>/os-logs/`` (as Ganeti keeps one per OS
operation) because OS scripts are the part of an install most likely to fail for
reasons outside Herd (a mirror down, a missing tool), and the operator needs the
script's own words; the tail of the log travels back in the error so the job log
already shows them.

Scripts run in their own process group: a timeout kills everything they started
(dd, debootstrap, …), not just the shell, so nothing keeps writing to a disk that the
master already considers failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from herd.errors import NodeError, ValidationError
from herd.node.os.api import OSDefinition

LOG_DIR = "os-logs"
LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 4096
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ScriptResult:
    log_path: Path
    #: For export: the size the script predicted through EXP_SIZE_FD, if it did.
    predicted_size: int | None = None


def log_path(root: Path, instance: str, op: str) -> Path:
    """``<root>/os-logs/<instance>-<op>-<timestamp>.log``, unique even within a second."""
    stamp = time.strftime("%Y%m%d-%H%M%S") + f".{time.time_ns() % 1_000_000_000:09d}"
    return root / LOG_DIR / f"{instance}-{op}-{stamp}.log"


def run_script(
    definition: OSDefinition,
    script: str,
    env: Mapping[str, str],
    log: Path,
    timeout: float | None,
    args: tuple[str, ...] = (),
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    size_fd: bool = False,
) -> ScriptResult:
    """Run ``script`` of ``definition``; NodeError (with the log tail) unless it exits 0.

    ``stdin``/``stdout`` are binary file objects for import and export; without them the
    script reads /dev/null and its output joins stderr in the log.  With ``size_fd`` the
    script may announce its output size on the descriptor named by EXP_SIZE_FD.
    """
    path = definition.script(script)
    if path is None:
        raise ValidationError(
            "script", script, f"a script of OS API {definition.api_version} ({definition.name})"
        )
    if timeout is not None and timeout <= 0:
        raise ValidationError("timeout", timeout, "a positive number of seconds, or null")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(env)
    with contextlib.ExitStack() as stack:
        logf = stack.enter_context(open(log, "ab"))
        logf.write(
            f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {definition.name} {script} "
            f"({path}) for {env.get('INSTANCE_NAME', '-')}\n".encode()
        )
        logf.flush()
        child_ends: list[int] = []
        size_r = -1
        pass_fds: tuple[int, ...] = ()
        if size_fd:
            size_r, size_w = os.pipe()
            stack.callback(os.close, size_r)
            child_ends.append(size_w)
            pass_fds = (size_w,)
            env["EXP_SIZE_FD"] = str(size_w)
        pumps: list[_Pump] = []
        child_in = _child_stdin(stack, stdin, pumps, child_ends)
        child_out = _child_stdout(stack, stdout, logf, pumps, child_ends)
        try:
            proc = subprocess.Popen(
                [str(path), *args],
                cwd=definition.path,
                env=env,
                stdin=child_in,
                stdout=child_out,
                stderr=logf,
                pass_fds=pass_fds,
                start_new_session=True,
            )
        except OSError as exc:
            raise NodeError(
                f"OS {definition.name} {script} script cannot be started: {exc}",
                os=definition.name,
                script=script,
                log=str(log),
            ) from exc
        finally:
            # Only the child may hold its pipe ends, or end-of-file never arrives.
            for fd in child_ends:
                os.close(fd)
        stack.callback(_reap, proc)
        threads = [threading.Thread(target=p.run, daemon=True) for p in pumps]
        for t in threads:
            t.start()
        code = _wait(proc, timeout, definition, script, log)
        for t in threads:
            t.join()
        predicted = _read_size(size_r) if size_fd else None
    broken = [exc for pump in pumps for exc in pump.errors]
    if broken and code == 0:
        raise NodeError(
            f"OS {definition.name} {script} stream failed: {broken[0]}",
            os=definition.name,
            script=script,
            log=str(log),
        )
    if code != 0:
        raise NodeError(
            f"OS {definition.name} {script} script failed with exit code {code}; "
            f"log {log}:\n{log_tail(log)}",
            os=definition.name,
            script=script,
            exit_code=code,
            log=str(log),
            log_tail=log_tail(log),
        )
    return ScriptResult(log, predicted)


def log_tail(log: Path) -> str:
    """The last lines of a log: enough to see why a script failed, small enough for a job log."""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:])


@dataclass(frozen=True)
class _Pump:
    """Copies between a caller's file object that has no descriptor (an in-memory buffer)
    and a pipe to the script; ``ours`` is the pipe end, closed when done so the other
    side sees end-of-file.  Such objects must not block: the run waits for the copy."""

    src: IO[bytes]
    dst: IO[bytes]
    ours: IO[bytes]
    #: What broke the copy on the caller's side; a script that stops reading is not it.
    errors: list[Exception] = field(default_factory=list)

    def run(self) -> None:
        try:
            shutil.copyfileobj(self.src, self.dst, CHUNK)
        except BrokenPipeError:
            pass
        except (OSError, ValueError) as exc:
            self.errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                self.ours.close()


def _child_stdin(
    stack: contextlib.ExitStack,
    stdin: IO[bytes] | None,
    pumps: list[_Pump],
    child_ends: list[int],
) -> int:
    if stdin is None:
        return subprocess.DEVNULL
    fd = _fileno(stdin)
    if fd is not None:
        return fd
    r, w = os.pipe()
    ours = stack.enter_context(os.fdopen(w, "wb"))
    pumps.append(_Pump(stdin, ours, ours))
    child_ends.append(r)
    return r


def _child_stdout(
    stack: contextlib.ExitStack,
    stdout: IO[bytes] | None,
    logf: IO[bytes],
    pumps: list[_Pump],
    child_ends: list[int],
) -> int | IO[bytes]:
    if stdout is None:
        return logf
    fd = _fileno(stdout)
    if fd is not None:
        stdout.flush()
        return fd
    r, w = os.pipe()
    ours = stack.enter_context(os.fdopen(r, "rb"))
    pumps.append(_Pump(ours, stdout, ours))
    child_ends.append(w)
    return w


def _wait(
    proc: subprocess.Popen[bytes],
    timeout: float | None,
    definition: OSDefinition,
    script: str,
    log: Path,
) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise NodeError(
            f"OS {definition.name} {script} script timed out after {timeout}s; "
            f"log {log}:\n{log_tail(log)}",
            os=definition.name,
            script=script,
            timeout=timeout,
            log=str(log),
            log_tail=log_tail(log),
        ) from None


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _read_size(fd: int) -> int | None:
    data = b""
    while chunk := os.read(fd, 64):
        data += chunk
    text = data.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _fileno(f: IO[bytes]) -> int | None:
    try:
        return f.fileno()
    except (OSError, AttributeError, ValueError):
        return None
