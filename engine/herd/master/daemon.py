"""``herd master``: owns the store, the queue, the locks and the API socket.

Exactly one master runs per state directory; the API socket doubles as the guard (a
second master refuses to start while the first answers on it).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from herd.api.routes import build_router
from herd.api.server import UnixAPIServer
from herd.config.store import SQLiteStore, Store
from herd.jobs.db import JobDB
from herd.jobs.queue import JobQueue
from herd.jobs.runner import JobRunner
from herd.locking import LockManager
from herd.master.services import Services

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = "/var/lib/herd"


def default_state_dir() -> str:
    return os.environ.get("HERD_STATE_DIR", DEFAULT_STATE_DIR)


def sync_locks(store: Store, locks: LockManager) -> None:
    """Register one lock per object; lock names are UUIDs so a rename never races a lock."""
    locks.register("nodegroup", [g.uuid for g in store.list("nodegroup")])
    locks.register("instance", [i.uuid for i in store.list("instance")])
    nodes = [n.uuid for n in store.list("node")]
    locks.register("node", nodes)
    locks.register("node-res", nodes)


class Master:
    def __init__(
        self, state_dir: str | Path, socket_path: str | Path, max_running: int | None = None
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = SQLiteStore(self.state_dir / "config.db")
        self.locks = LockManager()
        sync_locks(self.store, self.locks)
        self.services = Services(state_dir=self.state_dir)
        self.jobdb = JobDB(self.state_dir / "jobs.db")
        self.queue = JobQueue(
            self.jobdb,
            JobRunner(self.store, self.locks, self.services),
            max_running=max_running,
        )
        self.server = UnixAPIServer(socket_path, build_router(self.store, self.queue, self.locks))
        self._stopped = threading.Event()

    def serve(self) -> None:
        """Run until ``shutdown()`` (or SIGTERM/SIGINT when called from the main thread)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        self.queue.start()
        thread = threading.Thread(
            # A short poll interval keeps shutdown (SIGTERM, tests) prompt; idle cost is nil.
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="herd-api",
            daemon=True,
        )
        thread.start()
        log.info("herd master serving on %s (state %s)", self.server.path, self.state_dir)
        self._stopped.wait()
        self.server.shutdown()
        self.server.server_close()
        self.queue.stop()
        self.services.reset_rpc()
        self.jobdb.close()
        self.store.close()
        log.info("herd master stopped")

    def shutdown(self) -> None:
        self._stopped.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        self.shutdown()
