"""``herd-node``: the node agent the master runs over SSH.

Two modes share one request handler:

* ``herd-node``: one JSON request on stdin, one JSON answer on stdout (debugging,
  shell use, and nodes reached without a pooled session);
* ``herd-node --serve``: a long-lived session.  It first writes a banner line, then
  answers newline-framed requests ``{"id", "action", "args"}`` with
  ``{"id", "ok", "result"}`` or ``{"id", "ok": false, "error"}``, one line each, in
  order, until stdin closes.  Starting Python and importing the engine costs far more
  than any control action, so the master keeps one session per node and pays it once.

Errors travel as ``HerdError.to_dict()`` so the master re-raises the same class.  The
frame stream is the process's real stdout, which is moved to a private descriptor at
start: anything else that writes to fd 1 (a print, a child process) lands on stderr
instead of corrupting the framing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import IO, Any

import herd
from herd.errors import HerdError, NodeError, ValidationError
from herd.node.actions import load_all
from herd.node.actions.registry import NodeContext, action_names, dispatch
from herd.rpc.protocol import PROTOCOL


def banner() -> dict[str, Any]:
    """First line of a session: lets the client check it reached a compatible agent."""
    return {
        "agent": "herd-node",
        "version": herd.__version__,
        "protocol": PROTOCOL,
        "actions": action_names(),
    }


def handle(ctx: NodeContext, request: Any) -> dict[str, Any]:
    """Answer one decoded request; never raises, whatever the request or the action does."""
    req_id = request.get("id") if isinstance(request, dict) else None
    try:
        if not isinstance(request, dict):
            raise ValidationError("request", request, "a JSON object")
        result = dispatch(ctx, request.get("action"), request.get("args"))
        json.dumps(result)
    except HerdError as exc:
        return {"id": req_id, "ok": False, "error": exc.to_dict()}
    except Exception as exc:  # noqa: BLE001 - the agent answers, whatever an action raises
        name = request.get("action") if isinstance(request, dict) else None
        err = NodeError(
            f"node action {name} failed: {type(exc).__name__}: {exc}",
            action=str(name),
            exception=type(exc).__name__,
        )
        return {"id": req_id, "ok": False, "error": err.to_dict()}
    return {"id": req_id, "ok": True, "result": result}


def handle_line(ctx: NodeContext, line: bytes) -> dict[str, Any]:
    """Decode one frame and answer it; a malformed frame gets an error answer, not a crash."""
    try:
        request = json.loads(line)
    except ValueError:
        err = ValidationError("request", line[:80].decode("utf-8", "replace"), "one JSON object")
        return {"id": None, "ok": False, "error": err.to_dict()}
    return handle(ctx, request)


def serve(ctx: NodeContext, infile: IO[bytes], outfile: IO[bytes]) -> None:
    """Answer requests line by line until ``infile`` reaches EOF."""
    _write(outfile, banner())
    for line in infile:
        if line.strip():
            _write(outfile, handle_line(ctx, line))


def _write(outfile: IO[bytes], frame: dict[str, Any]) -> None:
    outfile.write(json.dumps(frame, separators=(",", ":")).encode() + b"\n")
    outfile.flush()


def _private_stdout() -> IO[bytes]:
    """Take fd 1 for frames only and point fd 1 at stderr for everything else."""
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return frames


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="herd-node", description="Herd node agent")
    parser.add_argument(
        "--serve", action="store_true", help="answer newline-framed JSON requests until EOF"
    )
    args = parser.parse_args(argv)
    load_all()
    ctx = NodeContext.from_env()
    frames = _private_stdout()
    if args.serve:
        serve(ctx, sys.stdin.buffer, frames)
        return 0
    answer = handle_line(ctx, sys.stdin.buffer.read())
    _write(frames, answer)
    return 0 if answer["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
