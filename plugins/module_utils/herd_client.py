"""Client of the herd master's JSON-over-HTTP API, as used by the herd.cluster modules.

Modules never run operations themselves: they submit jobs to ``herd master`` and read its
answers, so two playbooks running at once cannot corrupt the cluster. This file runs on the
managed host (Ansible ships module_utils with the module), so it uses the standard library
only: ``http.client`` over an ``AF_UNIX`` socket for the local root-only socket, and over TLS
for the REST endpoint.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from ansible.module_utils.basic import env_fallback

#: Job states after which a job never changes again.
FINAL_STATUSES = frozenset(("success", "error", "canceled"))

#: The longest single long-poll we ask the master for; the socket timeout is a bit longer so
#: a slow but healthy answer is never mistaken for a dead master.
LONG_POLL_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 60.0

#: Connection options shared by every module (documented in doc_fragments/connection.py).
CONNECTION_ARGSPEC: dict[str, dict[str, Any]] = {
    "socket": {
        "type": "path",
        "default": "/run/herd/master.sock",
        "fallback": (env_fallback, ["HERD_SOCKET"]),
    },
    "api_url": {"type": "str", "fallback": (env_fallback, ["HERD_API_URL"])},
    "api_user": {"type": "str", "fallback": (env_fallback, ["HERD_API_USER"])},
    "api_password": {
        "type": "str",
        "no_log": True,
        "fallback": (env_fallback, ["HERD_API_PASSWORD"]),
    },
    "api_token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["HERD_API_TOKEN"])},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path", "fallback": (env_fallback, ["HERD_API_CA"])},
}

#: Job options of the modules that submit jobs (doc fragment ``connection.job``).
JOB_ARGSPEC: dict[str, dict[str, Any]] = {
    "wait": {"type": "bool", "default": True},
    "wait_timeout": {"type": "int", "default": 3600, "aliases": ["timeout"]},
    "priority": {"type": "int", "default": 0},
    "reason": {"type": "str"},
}

#: Keyword arguments for AnsibleModule that go with CONNECTION_ARGSPEC.
CONNECTION_CONSTRAINTS: dict[str, list[list[str]]] = {
    "mutually_exclusive": [["api_token", "api_user"]],
    "required_together": [["api_user", "api_password"]],
}


class HerdApiError(Exception):
    """An error answered by the master (or the failure to reach it), ready for fail_json.

    ``kind``, ``message`` and ``details`` mirror the API's ``{"error": {...}}`` body, which in
    turn mirrors herd.errors.HerdError, so a playbook can tell a ValidationError from a
    ConflictError without parsing prose.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        details: dict[str, Any] | None = None,
        status: int | None = None,
        https: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = details or {}
        self.status = status
        self.https = https

    def __str__(self) -> str:
        """The message a task shows. The error's kind already says what the status code
        would (ValidationError is a 400), so only an answer without a herd error body (a
        proxy's 502, say) names its status, the one thing known about it."""
        where = f" (HTTP {self.status})" if self.kind == "HTTPError" else ""
        return f"{self.kind}: {self.message}{where}"

    def to_dict(self) -> dict[str, Any]:
        """The task result's ``error``. Over HTTPS it carries ``http_status`` too: a proxy
        or load balancer in front of the master answers with codes of its own, and telling
        them from the master's helps. The root-only socket has no such middlemen."""
        error = {"type": self.kind, "message": self.message, "details": self.details}
        if self.https and self.status is not None:
            error["http_status"] = self.status
        return error


class HerdJobFailed(HerdApiError):
    """A job reached ``error`` or ``canceled``; carries the job document for the task result."""

    def __init__(self, job: dict[str, Any]) -> None:
        error = job.get("error") or {}
        kind = str(error.get("type") or "JobFailed")
        text = str(error.get("message") or f"job ended with status {job.get('status')}")
        super().__init__(
            kind, f"job {job.get('id')} {job.get('status')}: {text}", error.get("details")
        )
        self.job = job


class HerdJobTimeout(HerdApiError):
    """The wait ran out; the job itself goes on running on the master."""

    def __init__(self, job: dict[str, Any], timeout: float) -> None:
        super().__init__(
            "JobTimeout",
            f"job {job.get('id')} still {job.get('status')} after {timeout:g}s; "
            "it keeps running on the master",
            {"job_id": job.get("id"), "status": job.get("status")},
        )
        self.job = job


def validation_error(
    field: str, value: Any, message: str, allowed: str | None = None
) -> HerdApiError:
    """Bad task input refused by a module, shaped like the master's ValidationError (the
    details name the field, the value and, where the module knows it, what is allowed), so
    a playbook sees one kind of refusal whichever side refused."""
    details = {"field": field, "value": value}
    if allowed is not None:
        details["allowed"] = allowed
    return HerdApiError("ValidationError", message, details)


def not_found(kind: str, name: str) -> HerdApiError:
    """The object a task names is not in the cluster, shaped like the master's NotFoundError."""
    return HerdApiError("NotFoundError", f"{kind} {name} not found", {"field": "name"})


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix stream socket: http.client does the protocol, we do the connect."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class HerdClient:
    """Talks to one master, over its Unix socket or its HTTPS endpoint.

    One connection per request keeps the client free of reconnect logic; modules make only a
    handful of requests, and the long poll makes waiting cheap regardless.
    """

    def __init__(
        self,
        socket_path: str | None = "/run/herd/master.sock",
        api_url: str | None = None,
        api_user: str | None = None,
        api_password: str | None = None,
        api_token: str | None = None,
        validate_certs: bool = True,
        ca_path: str | None = None,
    ) -> None:
        self._headers = {"Accept": "application/json"}
        if api_url:
            parts = urlsplit(api_url)
            if parts.scheme != "https" or not parts.hostname:
                raise HerdApiError(
                    "ValidationError",
                    f"api_url must be an https:// URL, got {api_url!r}: "
                    "credentials are never sent in clear text",
                    {"field": "api_url", "value": api_url},
                )
            self._https_host = parts.hostname
            self._https_port = parts.port
            self._prefix = parts.path.rstrip("/")
            self._ssl = ssl.create_default_context(cafile=ca_path)
            if not validate_certs:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
            self.endpoint = api_url
        elif socket_path:
            self._prefix = ""
            self.endpoint = f"unix socket {socket_path}"
        else:
            raise HerdApiError("ValidationError", "either socket or api_url must be given")
        self._url = api_url
        self._socket_path = socket_path
        if api_token:
            self._headers["Authorization"] = f"Bearer {api_token}"
        elif api_user is not None:
            pair = f"{api_user}:{api_password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> HerdClient:
        """Build a client from a module's validated parameters (CONNECTION_ARGSPEC)."""
        return cls(
            socket_path=params.get("socket"),
            api_url=params.get("api_url"),
            api_user=params.get("api_user"),
            api_password=params.get("api_password"),
            api_token=params.get("api_token"),
            validate_certs=params.get("validate_certs", True),
            ca_path=params.get("ca_path"),
        )

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._url:
            return http.client.HTTPSConnection(
                self._https_host, self._https_port, timeout=timeout, context=self._ssl
            )
        return _UnixHTTPConnection(str(self._socket_path), timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> Any:
        """Send one request and return the decoded JSON answer; raise HerdApiError otherwise."""
        target = self._prefix + path
        if params:
            target += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        headers = dict(self._headers)
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._connection(timeout)
        try:
            conn.request(method, target, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc
        finally:
            conn.close()
        return self._decode(response.status, raw, https=bool(self._url))

    def _unreachable(self, exc: BaseException) -> HerdApiError:
        """Turn a transport failure into advice: the likely cause differs by errno."""
        hint = ""
        if isinstance(exc, FileNotFoundError):
            hint = " (no such socket: is `herd master` running on this host?)"
        elif isinstance(exc, PermissionError):
            hint = " (permission denied: the socket is root-only, use become)"
        elif isinstance(exc, ConnectionRefusedError):
            hint = " (connection refused: is `herd master` running?)"
        elif isinstance(exc, ssl.SSLCertVerificationError):
            hint = " (certificate not trusted: set ca_path to the cluster CA)"
        elif isinstance(exc, (socket.timeout, TimeoutError)):
            hint = " (timed out waiting for the master)"
        return HerdApiError(
            "ConnectionError",
            f"cannot talk to the herd master at {self.endpoint}: {exc}{hint}",
            {"endpoint": self.endpoint},
        )

    @staticmethod
    def _decode(status: int, raw: bytes, https: bool = False) -> Any:
        try:
            data = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            data = None
        if 200 <= status < 300:
            if data is None and raw:
                raise HerdApiError(
                    "ProtocolError",
                    f"master answered non-JSON: {raw[:200]!r}",
                    status=status,
                    https=https,
                )
            return data
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            raise HerdApiError(
                str(error.get("type") or "HerdError"),
                str(error.get("message") or ""),
                error.get("details") if isinstance(error.get("details"), dict) else {},
                status,
                https,
            )
        text = raw[:200].decode("utf-8", "replace").strip() or http.client.responses.get(status, "")
        raise HerdApiError("HTTPError", text, status=status, https=https)

    def info(self) -> dict[str, Any]:
        """Engine version and cluster name; cheap, so modules can use it as a ping."""
        return self.request("GET", "/v1/info")

    def submit(self, ops: list[dict[str, Any]], reason: list[list[Any]], priority: int = 0) -> int:
        """Submit one job of ``ops`` and return its id."""
        answer = self.request(
            "POST", "/v1/jobs", {"ops": ops, "priority": priority, "reason": reason}
        )
        return int(answer["job_id"])

    def job(self, job_id: int) -> dict[str, Any]:
        return self.request("GET", f"/v1/jobs/{int(job_id)}")

    def wait(
        self,
        job_id: int,
        timeout: float,
        on_log: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Long-poll a job until it ends; return it on success, raise HerdJobFailed otherwise.

        Each log entry is handed to ``on_log`` exactly once, in serial order, even though the
        master resends the whole log in every answer.
        """
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            remaining = deadline - time.monotonic()
            poll = max(0.0, min(LONG_POLL_SECONDS, remaining))
            job = self.request(
                "GET",
                f"/v1/jobs/{int(job_id)}/wait",
                params={"log_since": seen, "timeout": f"{poll:.3f}"},
                timeout=poll + REQUEST_TIMEOUT_SECONDS,
            )
            for entry in sorted(job.get("log") or [], key=lambda e: int(e.get("serial", 0))):
                serial = int(entry.get("serial", 0))
                if serial > seen:
                    seen = serial
                    if on_log is not None:
                        on_log(entry)
            status = job.get("status")
            if status == "success":
                return job
            if status in FINAL_STATUSES:
                raise HerdJobFailed(job)
            if remaining <= 0:
                raise HerdJobTimeout(job, timeout)

    def query(self, kind: str, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Objects of a list kind (``nodes``, ``nodegroups``, ``instances``), sorted by name."""
        params = {"names": ",".join(names)} if names else None
        answer = self.request("GET", f"/v1/query/{quote(kind)}", params=params)
        return list(answer.get("items") or [])

    def query_one(self, kind: str, name: str) -> dict[str, Any] | None:
        """The named object, or None when it does not exist (absence is a state, not an error).

        A master may answer an unknown name in ``names=`` with 404 or with an empty list; both
        mean the same here.
        """
        try:
            items = self.query(kind, [name])
        except HerdApiError as exc:
            if exc.status == 404:
                return None
            raise
        for item in items:
            if item.get("name") == name:
                return item
        return None

    def cluster(self) -> dict[str, Any] | None:
        """The cluster object, or None before ``cluster.init``."""
        try:
            return self.request("GET", "/v1/query/cluster")
        except HerdApiError as exc:
            if exc.status == 404:
                return None
            raise
