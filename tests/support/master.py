"""A real master in a thread of the test process, serving a real Unix socket."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from herd.api.client import Client
from herd.master.daemon import Master


@dataclass
class RunningMaster:
    master: Master
    client: Client
    state_dir: Path
    socket: Path


def start_master(base: Path) -> tuple[RunningMaster, threading.Thread]:
    state, sock = base / "state", base / "master.sock"
    master = Master(state, sock)
    thread = threading.Thread(target=master.serve, daemon=True)
    thread.start()
    client = Client(str(sock))
    client.info()
    return RunningMaster(master, client, state, sock), thread


def stop_master(running: RunningMaster, thread: threading.Thread) -> None:
    running.client.close()
    running.master.shutdown()
    thread.join(30)
    running.master.services.reset_rpc()
