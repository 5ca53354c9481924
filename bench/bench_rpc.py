#!/usr/bin/env python3
"""Per-call cost of a node call: pooled session vs. fresh ``ssh`` vs. fresh paramiko.

Brings up a one-node lab, measures the three ways of calling ``herd-node ping`` side by
side in one run, prints medians and ratios, and tears the lab down.  Needs root.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lab"))

import herdlab
from timing import median_ms

from herd.rpc.client import NodeClient
from herd.rpc.ssh import NodeAddress, SSHPool

PING = b'{"id": 1, "action": "ping"}'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="calls per method (fresh ones)")
    args = parser.parse_args()
    reason = herdlab.missing_requirements()
    if reason:
        print(f"cannot bench: {reason}", file=sys.stderr)
        return 1
    name = f"bench{os.getpid() % 100000}"
    try:
        lab = herdlab.up(name, 1)
        node = lab.nodes[0]
        address = NodeAddress(node.name, node.ip, node.host_key)
        key = paramiko.Ed25519Key.from_private_key_file(lab.key_path)
        with tempfile.TemporaryDirectory() as tmp:
            known = Path(tmp) / "known_hosts"
            known.write_text(f"{node.ip} {node.host_key}\n")
            ssh_cmd = ["ssh", "-i", lab.key_path, "-o", "BatchMode=yes"]
            ssh_cmd += ["-o", f"UserKnownHostsFile={known}", f"root@{node.ip}", "herd-node"]

            def fresh_cli() -> None:
                subprocess.run(ssh_cmd, input=PING, capture_output=True, check=True)

            def fresh_paramiko() -> None:
                with SSHPool(key) as pool:
                    assert pool.run(address, "herd-node", stdin=PING).exit_status == 0

            with SSHPool(key) as pool, NodeClient(pool) as client:
                client.call(address, "ping")
                pooled = median_ms(lambda: client.call(address, "ping"), args.runs * 50) / 1000
                cli = median_ms(fresh_cli, args.runs) / 1000
                fresh = median_ms(fresh_paramiko, args.runs) / 1000
    finally:
        herdlab.down(name)
    print(f"pooled herd-node session : {pooled * 1000:8.3f} ms/call  (1x)")
    print(f"fresh paramiko + agent   : {fresh * 1000:8.3f} ms/call  ({fresh / pooled:,.0f}x)")
    print(f"fresh ssh CLI + agent    : {cli * 1000:8.3f} ms/call  ({cli / pooled:,.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
