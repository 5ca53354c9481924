"""``herd master``: owns the store, the queue, the locks and the API socket.

Exactly one master runs per state directory; the API socket doubles as the guard (a
second master refuses to start while the first answers on it). With an HTTPS address the
master also serves the API over TLS, under a certificate of the cluster CA that it issues
itself at every start; before ``cluster init`` there is no CA, so HTTPS then waits for it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import stat
import threading
from pathlib import Path
from types import FrameType

from herd import faults
from herd.api.context import ApiContext
from herd.api.rapi.resources import rapi_router
from herd.api.rapi.server import RapiAuthenticator, RapiServer
from herd.api.rapi.users import USERS_FILE, UsersFile
from herd.api.routes import build_router
from herd.api.server import HTTPSAPIServer, UnixAPIServer, https_context
from herd.auth import AuthStore, FailureLimiter
from herd.config.store import SQLiteStore, Store
from herd.crypto.ca import ClusterCA
from herd.crypto.secrets import ReplayCache
from herd.errors import PrerequisiteError, ValidationError
from herd.jobs.db import JobDB
from herd.jobs.queue import JobQueue
from herd.jobs.runner import JobRunner
from herd.locking import LockManager
from herd.master.services import MasterServices

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = "/var/lib/herd"
#: The HTTPS API's certificate and key, in the state directory's crypto directory.
API_CERT_FILE, API_KEY_FILE = "api.pem", "api.key"
#: How often a master waiting for ``cluster init`` looks for the CA to start HTTPS.
CA_POLL_SECONDS = 1.0
#: The master's state (domain secret, credentials, job parameters) is root's alone.
STATE_UMASK, STATE_DIR_MODE, STATE_FILE_MODE = 0o077, 0o700, 0o600


def default_state_dir() -> str:
    return os.environ.get("HERD_STATE_DIR", DEFAULT_STATE_DIR)


def default_https_bind() -> str | None:
    """The master setting for HTTPS (env ``HERD_HTTPS_BIND``), so that a master started
    in the background by ``herd cluster init`` serves HTTPS too."""
    return os.environ.get("HERD_HTTPS_BIND") or None


def default_rapi_bind() -> str | None:
    """Where to serve Ganeti's RAPI (env ``HERD_RAPI_BIND``; Ganeti's port is 5080); off
    unless set, like HTTPS."""
    return os.environ.get("HERD_RAPI_BIND") or None


def parse_bind(value: str, field: str = "https_bind") -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` into a socket address; port 0 picks a free one."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValidationError(field, value, "HOST:PORT, e.g. 0.0.0.0:8443 or [::]:8443")
    return host, int(port)


def secure_state_dir(state_dir: Path) -> None:
    """Make the state directory private before anything in it is opened.

    SQLite creates its databases with whatever the umask leaves (and their WAL and SHM
    files with the database's mode), so a directory made 0755 by hand or by an older
    version held world-readable secrets; the umask covers what is created from now on, the
    chmods what an earlier run left. A directory that others can write, or that belongs to
    someone else, is refused rather than repaired: whoever could write it may already have
    planted files in it.
    """
    os.umask(STATE_UMASK)
    state_dir.mkdir(parents=True, exist_ok=True, mode=STATE_DIR_MODE)
    info = state_dir.stat()
    if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PrerequisiteError(
            f"refusing state directory {state_dir}: it is mode "
            f"{stat.S_IMODE(info.st_mode):04o} owned by uid {info.st_uid}; it must belong to "
            f"uid {os.geteuid()} and not be writable by group or others (chmod 0700 it "
            "once its contents are checked)",
            state_dir=str(state_dir),
            mode=f"{stat.S_IMODE(info.st_mode):04o}",
            uid=info.st_uid,
        )
    os.chmod(state_dir, STATE_DIR_MODE)
    for entry in os.scandir(state_dir):
        if entry.is_file(follow_symlinks=False):
            os.chmod(entry.path, STATE_FILE_MODE)


def sync_locks(store: Store, locks: LockManager) -> None:
    """Register one lock per object; lock names are UUIDs so a rename never races a lock."""
    locks.register("nodegroup", [g.uuid for g in store.list("nodegroup")])
    locks.register("instance", [i.uuid for i in store.list("instance")])
    nodes = [n.uuid for n in store.list("node")]
    locks.register("node", nodes)
    locks.register("node-res", nodes)


class Master:
    def __init__(
        self,
        state_dir: str | Path,
        socket_path: str | Path,
        max_running: int | None = None,
        https_bind: str | None = None,
        rapi_bind: str | None = None,
    ) -> None:
        faults.configure(os.environ)  # test-only; refuses to arm unless enabled
        self.https_address = parse_bind(https_bind) if https_bind else None
        self.rapi_address = parse_bind(rapi_bind, "rapi_bind") if rapi_bind else None
        self.state_dir = Path(state_dir)
        secure_state_dir(self.state_dir)
        self.store = SQLiteStore(self.state_dir / "config.db")
        self.locks = LockManager()
        sync_locks(self.store, self.locks)
        self.services = MasterServices(state_dir=self.state_dir)
        self.jobdb = JobDB(self.state_dir / "jobs.db")
        # Before the queue starts: a job resumed at start-up may verify a signed message.
        self.replay = ReplayCache(self.state_dir / ReplayCache.FILE)
        self.queue = JobQueue(
            self.jobdb,
            JobRunner(self.store, self.locks, self.services, self.replay),
            max_running=max_running,
        )
        self.auth = AuthStore(self.state_dir / AuthStore.FILE)
        self.router = build_router(self.store, self.queue, self.locks, self.auth, self.services)
        # Ganeti's RAPI: the same parts behind Ganeti's resource names (docs/rapi.md).
        self.rapi_router = rapi_router(
            ApiContext(self.store, self.queue, self.locks, self.auth, self.services)
        )
        self.rapi_users = UsersFile(self.state_dir / USERS_FILE)
        #: One failed-login budget per address for both listeners: each takes Herd tokens.
        self.login_failures = FailureLimiter()
        self.server = UnixAPIServer(socket_path, self.router)
        self.https: HTTPSAPIServer | None = None
        self.rapi: RapiServer | None = None
        self._https_lock = threading.Lock()
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
        if (self.https_address or self.rapi_address) and not self._start_https():
            log.info("HTTPS API waits for 'herd cluster init' (no cluster CA yet)")
            threading.Thread(target=self._https_when_ready, name="herd-https-wait").start()
        self._stopped.wait()
        with self._https_lock:
            for listener in (self.https, self.rapi):
                if listener:
                    listener.shutdown()
                    listener.server_close()
        self.server.shutdown()
        self.server.server_close()
        self.queue.stop()
        self.services.reset_rpc()
        self.jobdb.close()
        self.replay.close()
        self.store.close()
        log.info("herd master stopped")

    def shutdown(self) -> None:
        self._stopped.set()

    def _https_when_ready(self) -> None:
        """Start HTTPS once ``cluster init`` has made the CA. No caller is left to hear a
        bind failure here, so it is logged and tried again at the next poll."""
        while not self._stopped.wait(CA_POLL_SECONDS):
            try:
                if self._start_https():
                    return
            except OSError as exc:
                log.error("HTTPS API not started, trying again: %s", exc)

    def _start_https(self) -> bool:
        """Issue a fresh API certificate and start serving HTTPS (``/v1`` and RAPI, each
        where configured, under the one certificate); False while no CA exists.

        A bind failure at start-up is raised (the operator asked for HTTPS and must hear
        that it is not there); a fresh certificate per start means a renamed master or a
        new address is picked up by a restart, and the key never outlives one run by much.
        """
        crypto = self.services.crypto_dir
        clusters = self.store.list("cluster")
        if not clusters or not (crypto / ClusterCA.KEY_FILE).exists():
            return False
        cert_file, key_file = crypto / API_CERT_FILE, crypto / API_KEY_FILE
        ClusterCA.load(crypto).issue_node_cert(
            clusters[0].master_node, self._api_ips(clusters[0].master_node)
        ).save(cert_file, key_file)
        context = https_context(cert_file, key_file)
        with self._https_lock:
            if self._stopped.is_set():
                return True
            # Both bound before either serves: a port taken fails the pair, not half of it.
            https = rapi = None
            try:
                if self.https_address:
                    https = HTTPSAPIServer(
                        self.https_address, self.router, context, self.auth, self.login_failures
                    )
                if self.rapi_address:
                    authenticator = RapiAuthenticator(self.auth, self.rapi_users)
                    rapi = RapiServer(
                        self.rapi_address,
                        self.rapi_router,
                        context,
                        authenticator,
                        self.login_failures,
                    )
            except BaseException:
                if https is not None:
                    https.server_close()
                raise
            self.https, self.rapi = https, rapi
            if https is not None:
                _serve_in_thread(https, "herd-https")
            if rapi is not None:
                _serve_in_thread(rapi, "herd-rapi")
        return True

    def _api_ips(self, master_node: str) -> list[str]:
        """Addresses clients may dial and still have the certificate's host name checked:
        the master node's, loopback, and the bound address unless it is a wildcard."""
        node = self.store.find("node", master_node)
        ips = {"127.0.0.1", "::1"}
        if node is not None:
            ips |= {ip for ip in (node.primary_ip, node.secondary_ip) if ip}
        for address in (self.https_address, self.rapi_address):
            try:
                bound = ipaddress.ip_address(address[0]) if address else None
            except ValueError:
                bound = None
            if bound is not None and not bound.is_unspecified:
                ips.add(str(bound))
        return sorted(ips)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        self.shutdown()


def _serve_in_thread(server: HTTPSAPIServer, name: str) -> None:
    """Serve ``server`` from a daemon thread of its own, and say where."""
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    ).start()
    host, port = server.server_address[:2]
    log.info("herd master serving %s on %s port %d", name, host, port)
