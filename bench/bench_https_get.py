"""Small HTTPS GETs against a real master: how long ``GET /v1/info`` takes on a kept-alive
connection and on a fresh one (TLS handshake included), as the server answers now (each
answer in one write, TCP_NODELAY) and, side by side in the same run, as it did before
(head and body as two writes, Nagle on).

Two small writes on one TCP connection meet Nagle's algorithm on the server and delayed
ACKs on the client: the body waits for the ACK of the head, up to ~40 ms on Linux, on
every answer; on a new connection the first answer waits the same way behind the TLS
session tickets. Target (issue 15): a small GET within 5 ms after the handshake.

    python3 bench/bench_https_get.py [--requests 40]
"""

from __future__ import annotations

import argparse
import functools
import http.client
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import median_ms

from herd.api.server import _HTTPSRequestHandler
from herd.client import https_client_context
from tests.engine.api.https_master import start_https_master


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        https = start_https_master(Path(tmp))
        token = https.running.api.create_token("bench")
        host, port = https.url.removeprefix("https://").rsplit(":", 1)
        context = https_client_context(str(https.ca_file))
        headers = {"Authorization": f"Bearer {token}"}

        def connect() -> http.client.HTTPSConnection:
            return http.client.HTTPSConnection(host, int(port), timeout=30, context=context)

        def get(conn: http.client.HTTPSConnection) -> None:
            conn.request("GET", "/v1/info", headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status

        def fresh() -> None:
            conn = connect()
            get(conn)
            conn.close()

        rows = []
        for label, wbufsize, nodelay in (("now", -1, True), ("before", 0, False)):
            _HTTPSRequestHandler.wbufsize = wbufsize
            _HTTPSRequestHandler.disable_nagle_algorithm = nodelay
            kept = connect()
            get(kept)
            kept_ms = median_ms(functools.partial(get, kept), args.requests)
            rows.append((label, kept_ms, median_ms(fresh, 10)))
            kept.close()
        https.running.stop()
    print(f"{'GET /v1/info over HTTPS':26} {'kept-alive ms':>14} {'new conn ms':>12}")
    for label, kept_ms, fresh_ms in rows:
        print(f"{label:26} {kept_ms:14.2f} {fresh_ms:12.2f}")
    verdict = "met" if rows[0][1] <= 5 else "MISSED"
    print(f"kept-alive, before / now: {rows[1][1] / rows[0][1]:.1f}x; target 5 ms: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
