"""Client of the master's API: what the CLI, the benches and the tests use.

One kept-alive connection per client object (not thread-safe: give each thread its own).
Errors come back as the same HerdError subclasses the master raised.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from herd.errors import HerdError, MasterUnreachableError
from herd.jobs.job import FINAL

DEFAULT_SOCKET = "/run/herd/master.sock"


def default_socket() -> str:
    return os.environ.get("HERD_SOCKET", DEFAULT_SOCKET)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    def __init__(self, socket_path: str | None = None, timeout: float = 90.0) -> None:
        self.socket_path = socket_path or default_socket()
        self._conn = _UnixHTTPConnection(self.socket_path, timeout)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (1, 2):
            reused = self._conn.sock is not None
            sent = False
            try:
                self._conn.request(method, path, body=data, headers=headers)
                sent = True
                resp = self._conn.getresponse()
                payload = resp.read()
                break
            except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
                self._conn.close()
                raise MasterUnreachableError(
                    f"no herd master answers at {self.socket_path} ({exc.strerror}); "
                    "start one with 'herd master' or 'herd cluster init'",
                    socket=self.socket_path,
                ) from exc
            except TimeoutError as exc:
                self._conn.close()
                raise MasterUnreachableError(
                    f"the master at {self.socket_path} did not answer {method} {path} "
                    f"within {self._conn.timeout:g} s",
                    socket=self.socket_path,
                ) from exc
            except (ConnectionError, http.client.HTTPException) as exc:
                self._conn.close()
                # Only a kept-alive connection that died before the master could act on
                # the request is worth one fresh try; a lost answer to a POST is not,
                # because the job may already exist.
                if attempt == 2 or not reused or (sent and method == "POST"):
                    raise MasterUnreachableError(
                        f"lost the connection to the master at {self.socket_path} "
                        f"during {method} {path}: {exc!r}",
                        socket=self.socket_path,
                    ) from exc
        doc = json.loads(payload) if payload else None
        if resp.status >= 400:
            err = (doc or {}).get("error") if isinstance(doc, dict) else None
            raise HerdError.from_dict(err or {"message": f"HTTP {resp.status}"})
        return doc

    # ---- jobs ----------------------------------------------------------------------------

    def submit(
        self,
        ops: list[dict[str, Any]],
        priority: int | None = None,
        reason: list[list[Any]] | None = None,
        depends: list[list[Any]] | None = None,
    ) -> int:
        body: dict[str, Any] = {"ops": ops}
        if priority is not None:
            body["priority"] = priority
        if reason:
            body["reason"] = reason
        if depends:
            body["depends"] = depends
        return int(self.request("POST", "/v1/jobs", body)["job_id"])

    def submit_many(self, jobs: list[dict[str, Any]]) -> list[int]:
        return [int(i) for i in self.request("POST", "/v1/jobs", {"jobs": jobs})["job_ids"]]

    def job(self, job_id: int, log_since: int = 0) -> dict[str, Any]:
        return self.request("GET", f"/v1/jobs/{job_id}", query={"log_since": log_since})

    def jobs(self, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/jobs", query={"status": status, "limit": limit})["items"]

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self.request("POST", f"/v1/jobs/{job_id}/cancel")

    def wait(
        self,
        job_id: int,
        timeout: float | None = None,
        on_log: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 10.0,
    ) -> dict[str, Any]:
        """Long-poll until the job is final; feeds each new log entry to ``on_log``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        since, status = 0, None
        while True:
            left = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
            doc = self.request(
                "GET",
                f"/v1/jobs/{job_id}/wait",
                query={"log_since": since, "timeout": f"{left:.3f}", "status": status},
            )
            for entry in doc.get("log", []):
                since = max(since, entry["serial"])
                if on_log:
                    on_log(entry)
            status = doc["status"]
            if status in FINAL:
                return doc
            if deadline is not None and time.monotonic() >= deadline:
                raise HerdError(
                    f"job {job_id} still {status} after {timeout:g} s", job_id=job_id, status=status
                )

    def run(
        self,
        ops: list[dict[str, Any]],
        timeout: float | None = None,
        on_log: Callable[[dict[str, Any]], None] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Submit, wait, and return the last op's result, raising the job's error."""
        job_id = self.submit(ops, **kwargs)
        doc = self.wait(job_id, timeout, on_log)
        if doc["status"] != "success":
            raise HerdError.from_dict(
                doc.get("error") or {"message": f"job {job_id} ended as {doc['status']}"}
            )
        return doc["ops"][-1]["result"]

    # ---- state ---------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return self.request("GET", "/v1/info")

    def query(self, kind: str, names: list[str] | None = None) -> Any:
        if kind == "cluster":
            return self.request("GET", "/v1/query/cluster")
        query = {"names": ",".join(names)} if names else None
        return self.request("GET", f"/v1/query/{quote(kind)}", query=query)["items"]

    def dump(self) -> dict[str, Any]:
        return self.request("GET", "/v1/config")

    def queue(self) -> dict[str, Any]:
        return self.request("GET", "/v1/queue")

    def set_queue(self, max_running: int) -> dict[str, Any]:
        return self.request("PUT", "/v1/queue", {"max_running": max_running})

    def locks(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/locks")["items"]

    def ops(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/ops")["items"]
