#!/usr/bin/env python3
"""Disk transfer throughput: our pipeline vs. a Ganeti-style one vs. the raw limits.

All in one run on the same disk images, over loopback on this machine, so the numbers are
comparable with each other (not with a real network):

* ours: the real ``transfer_receive_start``/``transfer_send_start`` node actions, each end
  a background worker process, per-transfer certificates from a fresh cluster CA;
* Ganeti-style: ``dd | gzip -1 | socat OPENSSL`` into ``socat OPENSSL-LISTEN | gunzip | dd``
  with certificates from the same CA (and the same without gzip, TLS only);
* limits: reading the image, loopback TCP, ``openssl speed -evp aes-128-gcm``.

Images: 512 MiB of mixed compressible data with no zero blocks, and a 1 GiB sparse disk
with 5 % data.  Setup time is the end-to-end time of moving a 1 MiB disk holding 4 KiB:
process starts, imports, handshake.  Every result is checked against the source's SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from herd.crypto.ca import ClusterCA
from herd.node.actions import load_all
from herd.node.actions.registry import NodeContext, dispatch

MIB = 1024 * 1024
OURS = ("none", "zstd-fast", "lz4", "gzip-fast")


def mixed_block(i: int) -> bytes:
    """One MiB like a used filesystem: random (compressed media), text, and binary tables."""
    lines = (f"{i:08d} GET /index.html?id={j} 200 {j * 37 % 9973}\n" for j in range(14000))
    text = "".join(lines).encode()[: MIB // 2]
    table = b"".join(((i * 7919 + j) % 65521).to_bytes(4, "little") for j in range(MIB // 16))
    return os.urandom(MIB // 4) + text + table


def make_images(work: Path, full_mib: int, sparse_mib: int) -> dict[str, Path]:
    full = work / "full.img"
    with open(full, "wb") as f:
        for i in range(full_mib):
            f.write(mixed_block(i))
    sparse = work / "sparse.img"
    with open(sparse, "wb") as f:
        f.truncate(sparse_mib * MIB)
        for i in range(0, sparse_mib, 20):  # one MiB in twenty: 5 %
            f.seek(i * MIB)
            f.write(mixed_block(i))
    tiny = work / "tiny.img"
    with open(tiny, "wb") as f:
        f.write(b"t" * 4096)
        f.truncate(MIB)
    return {"full": full, "sparse": sparse, "tiny": tiny}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MIB):
            h.update(block)
    return h.hexdigest()


class Ours:
    """Both ends through the node actions, as the master would drive them."""

    def __init__(self, work: Path, ca: ClusterCA) -> None:
        load_all()
        self.ctx = NodeContext(work / "node")
        self.ca = ca
        self.n = 0

    def run(self, src: Path, dest: Path, compression: str) -> dict[str, Any]:
        self.n += 1
        tid = f"bench{self.n}"
        pair = self.ca.issue_transfer_cert(tid)
        creds = {
            "cert_pem": pair.cert_pem.decode(),
            "key_pem": pair.key_pem.decode(),
            "ca_pem": self.ca.cert_pem.decode(),
        }
        size_mib = -(-src.stat().st_size // MIB)
        recv = dispatch(self.ctx, "transfer_receive_start", {
            "transfer_id": tid, "dest_path": str(dest), "size_mib": size_mib,
            "compression": compression, "bind_ip": "127.0.0.1", **creds,
        })  # fmt: skip
        dispatch(self.ctx, "transfer_send_start", {
            "transfer_id": tid, "source_path": str(src), "dest_ip": "127.0.0.1",
            "port": recv["port"], "compression": compression, **creds,
        })  # fmt: skip
        while True:
            status = dispatch(self.ctx, "transfer_status", {"transfer_id": tid})
            if status["state"] != "running":
                break
            time.sleep(0.01)
        if status["state"] != "done":
            raise RuntimeError(f"transfer {tid} failed: {status['error']}")
        return status


class GanetiStyle:
    """dd | [gzip -1] | socat TLS -> socat TLS | [gunzip] | dd, as Ganeti's impexpd did."""

    def __init__(self, work: Path, ca: ClusterCA) -> None:
        self.files: dict[str, str] = {}
        for end in ("src", "dst"):
            pair = ca.issue_transfer_cert(f"ganeti-{end}")
            pair.save(work / f"{end}.pem", work / f"{end}.key")
            self.files[end] = f"cert={work / f'{end}.pem'},key={work / f'{end}.key'}"
        (work / "ca.pem").write_bytes(ca.cert_pem)
        self.cafile = f"cafile={work / 'ca.pem'}"

    def run(self, src: Path, dest: Path, gzip: bool) -> None:
        port = free_port()
        unzip = "| gunzip " if gzip else ""
        zip_ = "| gzip -1 " if gzip else ""
        receiver = subprocess.Popen(
            f"socat -u OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,{self.files['dst']},"
            f"{self.cafile},verify=1 STDOUT {unzip}| dd of={dest} bs=1M status=none",
            shell=True,
        )
        wait_listening(port)
        subprocess.run(
            f"dd if={src} bs=1M status=none {zip_}| socat -u STDIN "
            f"OPENSSL:127.0.0.1:{port},{self.files['src']},{self.cafile},verify=1,"
            "commonname=ganeti-dst",
            shell=True,
            check=True,
        )
        if receiver.wait(60) != 0:
            raise RuntimeError("ganeti-style receiver failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True)
        if out.stdout.strip():
            return
        time.sleep(0.005)
    raise RuntimeError(f"nothing listens on {port}")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def read_speed(path: Path) -> float:
    def read() -> None:
        with open(path, "rb", buffering=0) as f:
            buf = bytearray(MIB)
            while f.readinto(buf):
                pass

    return path.stat().st_size / timed(read)


def tcp_speed(total: int) -> float:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def sink() -> None:
        conn, _ = listener.accept()
        buf = bytearray(MIB)
        while conn.recv_into(buf):
            pass
        conn.close()

    thread = threading.Thread(target=sink)
    thread.start()
    block = os.urandom(MIB)

    def send() -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            for _ in range(total // MIB):
                s.sendall(block)
        thread.join()

    seconds = timed(send)
    listener.close()
    return total / seconds


def openssl_speed() -> float:
    out = subprocess.run(
        ["openssl", "speed", "-evp", "aes-128-gcm", "-seconds", "1", "-bytes", "16384"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    line = [ln for ln in out.splitlines() if ln.lower().startswith("aes-128-gcm")][-1]
    return float(re.findall(r"([\d.]+)k", line)[-1]) * 1000


def mbs(nbytes: float, seconds: float) -> str:
    return f"{nbytes / seconds / 1e6:8.0f} MB/s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-mib", type=int, default=512)
    parser.add_argument("--sparse-mib", type=int, default=1024)
    args = parser.parse_args(argv)
    for tool in ("socat", "gzip", "dd", "openssl", "ss"):
        if shutil.which(tool) is None:
            print(f"needs {tool}", file=sys.stderr)
            return 2
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=base, prefix="herd-bench-") as tmp:
        work = Path(tmp)
        ca = ClusterCA.create("bench.example")
        t0 = time.perf_counter()
        images = make_images(work, args.full_mib, args.sparse_mib)
        print(f"images built in {time.perf_counter() - t0:.1f} s in {work}")
        digests = {name: sha256(path) for name, path in images.items()}
        ours, ganeti = Ours(work, ca), GanetiStyle(work, ca)
        dest = work / "dest.img"

        def check(image: str) -> None:
            if sha256(dest) != digests[image]:
                raise RuntimeError(f"destination differs from {image}")
            dest.unlink()

        print("\nraw limits")
        print(f"  read image (page cache)     {mbs(read_speed(images['full']), 1)}")
        print(f"  loopback TCP (python)       {mbs(tcp_speed(1024 * MIB), 1)}")
        print(f"  openssl aes-128-gcm (16K)   {mbs(openssl_speed(), 1)}")

        results: dict[tuple[str, str], float] = {}
        for image in ("full", "sparse"):
            size = images[image].stat().st_size
            print(f"\n{image} image: {size // MIB} MiB logical")
            for codec in OURS:
                status: dict[str, Any] = {}
                seconds = timed(
                    lambda c=codec, i=image, st=status: st.update(ours.run(images[i], dest, c))
                )
                check(image)
                results[(image, f"ours {codec}")] = seconds
                print(
                    f"  ours {codec:<10}            {mbs(size, seconds)}  "
                    f"({seconds:5.2f} s, wire {status['wire_bytes'] / MIB:7.1f} MiB, "
                    f"data {status['data_bytes'] / MIB:7.1f} MiB)"
                )
            for gzip in (False, True):
                label = "ganeti gzip -1" if gzip else "ganeti tls only"
                seconds = timed(lambda g=gzip, i=image: ganeti.run(images[i], dest, g))
                check(image)
                results[(image, label)] = seconds
                print(f"  {label:<26}{mbs(size, seconds)}  ({seconds:5.2f} s)")
            base_s = results[(image, "ganeti gzip -1")]
            best = min((s, k) for (img, k), s in results.items() if img == image and "ours" in k)
            print(f"  -> {best[1]} is {base_s / best[0]:.1f}x faster than ganeti gzip -1")

        setup_ours = timed(lambda: ours.run(images["tiny"], dest, "none"))
        check("tiny")
        setup_ganeti = timed(lambda: ganeti.run(images["tiny"], dest, True))
        check("tiny")
        print("\nsetup (start to finish of a 1 MiB disk holding 4 KiB)")
        print(f"  ours            {setup_ours * 1000:7.0f} ms")
        print(f"  ganeti-style    {setup_ganeti * 1000:7.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
