"""Resource files checked by the real drbdadm (drbd-utils 9.22) in dry-run mode.

``drbdadm -d`` prints the drbdsetup/drbdmeta calls it would make without a kernel
module; ``__DRBD_NODE__`` makes it take the given ``on`` section as this host, and
``DRBD_DRIVER_VERSION_OVERRIDE=8.4.11`` switches it to its 8.4 mode, which is what the
VM nodes' kernels run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from herd.errors import ValidationError
from herd.node.storage.drbd_config import DrbdResource, render

pytestmark = pytest.mark.skipif(shutil.which("drbdadm") is None, reason="drbd-utils missing")

NAME = "herd-d1"
DATA = "/dev/herd/herd-d1.data"
META = "/dev/herd/herd-d1.meta"


def params(**overrides: Any) -> dict[str, Any]:
    return {
        "port": 11000, "minors": {"node1": 5, "node2": 7}, "secret": "s3cret",
        "nodes": ["node1", "node2"], "addresses": {"node1": "10.0.0.1", "node2": "10.0.0.2"},
        "vg": "herd", "resync_rate": "60M", "net_options": {"max-buffers": 8000},
        "disk_options": {"disk-flushes": False}, **overrides,
    }  # fmt: skip


def resource(**overrides: Any) -> DrbdResource:
    return DrbdResource.from_params(NAME, params(**overrides), "herd")


def drbdadm(
    tmp_path: Path, text: str, version: int, *args: str
) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / f"{NAME}.res"
    conf.write_text(text)
    env = {**os.environ, "__DRBD_NODE__": "node1", "DRBD_DRIVER_VERSION_OVERRIDE": ""}
    if version == 8:
        env["DRBD_DRIVER_VERSION_OVERRIDE"] = "8.4.11"
    return subprocess.run(
        ["drbdadm", "-c", str(conf), *args], capture_output=True, text=True, env=env, timeout=30
    )


def calls(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith(("drbd",))]


def test_dry_run_up_for_8_4(tmp_path: Path) -> None:
    out = calls(drbdadm(tmp_path, render(resource(), 8), 8, "-d", "up", NAME))
    assert out[:3] == [
        f"drbdsetup-84 new-resource {NAME}",
        f"drbdsetup-84 new-minor {NAME} 5 0",
        "drbdmeta 5 v08 /dev/herd/herd-d1.meta flex-external apply-al",
    ]
    assert out[3].startswith(
        "drbdsetup-84 attach 5 /dev/herd/herd-d1.data /dev/herd/herd-d1.meta flexible"
    )
    assert "--disk-flushes=no" in out[3] and "--resync-rate=60M" in out[3]
    connect = out[4].split()
    assert connect[:4] == ["drbdsetup-84", "connect", NAME, "ipv4:10.0.0.1:11000"]
    assert connect[4] == "ipv4:10.0.0.2:11000"
    for option in ("--protocol=C", "--shared-secret=s3cret", "--cram-hmac-alg=sha256",
                   "--after-sb-0pri=discard-zero-changes", "--after-sb-2pri=disconnect",
                   "--allow-two-primaries=no", "--max-buffers=8000"):  # fmt: skip
        assert option in connect


def test_dry_run_up_for_9(tmp_path: Path) -> None:
    out = calls(drbdadm(tmp_path, render(resource(), 9), 9, "-d", "up", NAME))
    assert out[0] == f"drbdsetup new-resource {NAME} 0"
    assert out[1] == f"drbdsetup new-minor {NAME} 5 0"
    assert out[2].startswith(f"drbdsetup new-peer {NAME} 1 --_name=node2")
    assert "--shared-secret=s3cret" in out[2] and "--protocol=C" in out[2]
    assert out[3] == f"drbdsetup new-path {NAME} 1 ipv4:10.0.0.1:11000 ipv4:10.0.0.2:11000"
    attach = [line for line in out if line.startswith("drbdsetup attach 5 ")]
    assert attach == [f"drbdsetup attach 5 {DATA} {META} flexible --disk-flushes=no"]
    assert out[-1] == f"drbdsetup connect {NAME} 1"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (8, {"create-md": "drbdmeta 5 v08 /dev/herd/herd-d1.meta flex-external create-md --force",
             "primary": "drbdsetup-84 primary 5 --force",
             "new-current-uuid": "drbdsetup-84 new-current-uuid 5 --clear-bitmap",
             "net-options": "drbdsetup-84 net-options ipv4:10.0.0.1:11000 ipv4:10.0.0.2:11000 "
                            "--allow-two-primaries=yes"}),
        (9, {"create-md": "drbdmeta 5 v09 /dev/herd/herd-d1.meta flex-external create-md 1 --force",
             "primary": f"drbdsetup primary {NAME} --force",
             "new-current-uuid": "drbdsetup new-current-uuid 5 --clear-bitmap",
             "net-options": None}),
    ],
)  # fmt: skip
def test_dry_run_of_the_commands_the_backend_issues(
    tmp_path: Path, version: int, expected: dict[str, str | None]
) -> None:
    """The exact argument forms drbd.py uses are accepted by drbdadm in both modes."""
    text = render(resource(), version)
    commands = {
        "create-md": ("--force", "create-md", NAME),
        "primary": ("primary", "--force", NAME),
        "new-current-uuid": ("new-current-uuid", "--clear-bitmap", f"{NAME}/0"),
        "net-options": ("net-options", "--allow-two-primaries=yes", NAME),
    }
    for key, args in commands.items():
        out = calls(drbdadm(tmp_path, text, version, "-d", *args))
        if expected[key] is None:
            assert out[-1].endswith("--allow-two-primaries=yes")
        else:
            assert out == [expected[key]]


@pytest.mark.parametrize("version", [8, 9])
def test_dump_parses_with_ipv6_dual_primary_and_handler(tmp_path: Path, version: int) -> None:
    res = replace(
        resource(addresses={"node1": "fd00::1", "node2": "fd00::2"}),
        allow_two_primaries=True,
        split_brain_marker="/var/lib/herd-node/drbd/herd-d1.split-brain",
    )
    result = drbdadm(tmp_path, render(res, version), version, "dump", NAME)
    assert result.returncode == 0, result.stderr
    assert "ipv6 [fd00::1]:11000" in result.stdout
    assert "allow-two-primaries yes" in result.stdout.replace("  ", " ").replace("  ", " ")
    assert "touch /var/lib/herd-node/drbd/herd-d1.split-brain" in result.stdout


@pytest.mark.parametrize("version", [8, 9])
def test_drbdadm_refuses_a_duplicate_address(tmp_path: Path, version: int) -> None:
    res = resource()
    same = replace(res, hosts=(res.hosts[0], replace(res.hosts[1], address="10.0.0.1")))
    result = drbdadm(tmp_path, render(same, version), version, "dump", NAME)
    assert result.returncode in (10, 20), result.stderr
    with pytest.raises(ValidationError, match="a different address per node"):
        resource(addresses={"node1": "10.0.0.1", "node2": "10.0.0.1"})


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"secret": 'x"; }'}, "disk.params.secret"),
        ({"port": 70000}, "disk.params.port"),
        ({"nodes": ["node1", "node1"]}, "disk.params.nodes"),
        ({"minors": {"node1": 5}}, "disk.params.minors.node2"),
        ({"addresses": {"node1": "10.0.0.1", "node2": "nohost"}}, "disk.params.addresses.node2"),
        ({"net_options": {"shared-secret": "x"}}, "disk.params.net_options"),
        ({"disk_options": {"on-io-error": "detach; }"}}, "disk.params.disk_options.on-io-error"),
        ({"protocol": "D"}, "disk.params.protocol"),
        ({"data_lv": "../x"}, "disk.params.data_lv"),
    ],
)
def test_bad_params_name_their_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        resource(**overrides)
    assert err.value.details["field"] == field
