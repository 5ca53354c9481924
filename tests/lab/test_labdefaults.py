"""A cluster built with the lab inventory's settings works with its defaults.

What a user following the guide gets: an instance added with nothing but a name, a disk
and the OS starts with the default NIC on the default bridge, and a stop powers the
guest off by ACPI instead of waiting out the shutdown timeout; ``plain`` is refused when
the job is submitted, naming the templates the lab can hold.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import herdlab
import pytest

from herd.errors import ValidationError
from tests.engine.harness import ThreadMaster
from tests.engine.ops.labsupport import (
    TINY,
    fails_cleanly,
    form_cluster,
    install_os,
    lab_master,
    run,
)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu"),
]

POWEROFF = "HERD-GUEST-POWEROFF"
#: A safety net only: the stop is asserted to be "acpi", never a timeout fallback.
SHUTDOWN_TIMEOUT = 300


@pytest.fixture(scope="module")
def default_cluster(
    lab_cluster: herdlab.Lab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadMaster]:
    """One lab node in a cluster made with exactly the settings the lab inventory gives."""
    settings = herdlab.inventory(lab_cluster.name)["all"]["vars"]["herd_cluster_settings"]
    node = lab_cluster.nodes[0]
    with lab_master(lab_cluster.key_path, tmp_path_factory.mktemp("labdefaults")) as running:
        form_cluster(running, [node], "labdefaults", **settings)
        install_os(node)
        yield running


def test_a_default_instance_starts_with_its_nic_and_stops_by_acpi(
    default_cluster: ThreadMaster, lab_cluster: herdlab.Lab
) -> None:
    node = lab_cluster.nodes[0]
    run(default_cluster, "instance.add", name="ld1", disk_template="file", disks=["16M"],
        os=TINY, primary_node=node.name)  # fmt: skip
    inst: dict[str, Any] = default_cluster.api.query("instances", ["ld1"])[0]
    assert [nic["link"] for nic in inst["nics"]] == [herdlab.NODE_BRIDGE]
    ports = node.exec("ip", "-o", "link", "show", "master", herdlab.NODE_BRIDGE).stdout
    assert "htap" in ports
    # At once, while the guest may still boot: the button is pressed until it listens.
    stopped = run(default_cluster, "instance.stop", name="ld1", shutdown_timeout=SHUTDOWN_TIMEOUT)
    assert stopped["method"] == "acpi"
    assert POWEROFF in (node.state_dir / "hv" / "kvm" / "ld1" / "serial.log").read_text()
    run(default_cluster, "instance.remove", name="ld1")


def test_plain_is_refused_at_submit_naming_what_the_lab_holds(
    default_cluster: ThreadMaster, lab_cluster: herdlab.Lab
) -> None:
    error = fails_cleanly(
        default_cluster, ValidationError, "instance.add", name="ld2", disk_template="plain",
        disks=["16M"], os=TINY, primary_node=lab_cluster.nodes[0].name,
    )  # fmt: skip
    assert error.details["field"].endswith("disk_template")
    assert "file, sharedfile" in error.message
