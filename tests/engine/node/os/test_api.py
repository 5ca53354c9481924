"""OS discovery, names, variants, parameters and the script environment (no processes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from herd.errors import NotFoundError, PrerequisiteError, ValidationError
from herd.node.os.api import (
    DEFAULT_SEARCH_PATH,
    check_osparams,
    find_os,
    instance_environment,
    list_os,
    load_os,
    resolve_variant,
    search_path,
    split_os_name,
)
from tests.engine.node.os.helpers import HERD_IMAGE, make_os, noop, sparse, spec

__all__ = ["noop"]


def test_our_own_os_definition_is_valid() -> None:
    d = load_os(HERD_IMAGE)
    assert d.error is None
    assert (d.api_version, d.variants) == (20, ("tiny", "blank"))
    assert [n for n, _ in d.parameters] == ["fs_label", "marker"]
    assert d.to_dict()["parameters"][0]["description"].startswith("Label of the root")


def test_debian_noop_speaks_api_10_without_variants_or_verify(noop: Path) -> None:
    d = load_os(noop)
    assert d.valid and d.api_versions == (5, 10) and d.api_version == 10
    assert d.variants == () and d.parameters == ()
    assert d.script("verify") is None and d.script("create") == noop / "create"


@pytest.mark.parametrize(
    ("api", "change", "error"),
    [
        (None, None, "'ganeti_api_version'"),
        ("x\n", None, "non-integer"),
        ("\n", None, "empty"),
        ("5\n", None, "not supported"),
        ("20\n", "rm:import", "'import' is missing"),
        ("20\n", "chmod:export", "'export' is not executable"),
        ("20\n", "rm:parameters.list", "'parameters.list' is missing"),
        ("20\n", "rm:verify", "'verify' is missing"),
        ("20\n", "dir:rename", "'rename' is not a regular file"),
        ("20\n", "params:bad-name x", "unusable name"),
    ],
)
def test_broken_definitions_say_why(
    tmp_path: Path, api: str | None, change: str | None, error: str
) -> None:
    d = make_os(tmp_path, "broken", api=api or "20\n")
    if api is None:
        (d / "ganeti_api_version").unlink()
    verb, _, arg = (change or "").partition(":")
    if verb == "rm":
        (d / arg).unlink()
    elif verb == "chmod":
        os.chmod(d / arg, 0o644)
    elif verb == "dir":
        (d / arg).unlink()
        (d / arg).mkdir()
    elif verb == "params":
        (d / "parameters.list").write_text(arg + "\n")
    loaded = load_os(d)
    assert not loaded.valid and error in str(loaded.error)
    assert loaded.to_dict()["api_version"] is None


def test_older_apis_need_fewer_files(tmp_path: Path) -> None:
    d15 = make_os(tmp_path, "v15", api="15\n", files={"variants.list": "# c\n\na\n  b \n"})
    (d15 / "verify").unlink()
    (d15 / "parameters.list").unlink()
    loaded = load_os(d15)
    assert loaded.valid and loaded.variants == ("a", "b") and loaded.parameters == ()
    d10 = make_os(tmp_path, "v10", api="10\n", files={"variants.list": "ignored\n"})
    assert load_os(d10).variants == ()


def test_search_path_puts_the_state_root_first_and_can_be_replaced(tmp_path: Path) -> None:
    assert search_path(tmp_path, {}) == (
        tmp_path / "os",
        *(Path(p) for p in DEFAULT_SEARCH_PATH),
    )
    assert search_path(tmp_path, {"HERD_OS_SEARCH_PATH": "/a::/b"}) == (
        tmp_path / "os",
        Path("/a"),
        Path("/b"),
    )


def test_listing_and_lookup_follow_the_search_order(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    make_os(first, "dup", files={"parameters.list": "one first\n"})
    make_os(second, "dup", files={"parameters.list": "two second\n"})
    make_os(second, ".hidden")
    make_os(second, "bad", api="1\n")
    (second / "not-a-dir").write_text("")
    path = [tmp_path / "missing", first, second]
    listed = {d.name: d for d in list_os(path)}
    assert sorted(listed) == ["bad", "dup"]
    assert listed["dup"].path == first / "dup" and listed["dup"].parameters == (("one", "first"),)
    assert listed["bad"].error is not None
    assert find_os("dup", path).path == first / "dup"
    with pytest.raises(PrerequisiteError) as broken:
        find_os("bad", path)
    assert broken.value.details["os"] == "bad"
    with pytest.raises(NotFoundError) as missing:
        find_os("nope", path)
    assert missing.value.details["search_path"] == [str(p) for p in path]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("noop", ("noop", None)), ("herd-image+tiny", ("herd-image", "tiny"))],
)
def test_os_names_split_into_name_and_variant(value: str, expected: tuple[str, str]) -> None:
    assert split_os_name(value) == expected


@pytest.mark.parametrize("value", ["", "+tiny", "a+", "../x", ".hidden", 3, None])
def test_bad_os_names_are_refused(value: object) -> None:
    with pytest.raises(ValidationError) as err:
        split_os_name(value, "spec.os")  # type: ignore[arg-type]
    assert err.value.details["field"] == "spec.os"


def test_variants_default_to_the_first_and_unknown_ones_are_named(noop: Path) -> None:
    d = load_os(HERD_IMAGE)
    assert resolve_variant(d, None) == "tiny"
    assert resolve_variant(d, "blank") == "blank"
    with pytest.raises(ValidationError) as err:
        resolve_variant(d, "huge")
    assert err.value.details["value"] == "herd-image+huge"
    assert "herd-image+tiny, herd-image+blank" in err.value.details["allowed"]
    assert "'huge'" in str(err.value)
    assert resolve_variant(load_os(noop), None) == ""
    with pytest.raises(ValidationError):
        resolve_variant(load_os(noop), "default")


def test_os_parameters_must_be_declared_strings() -> None:
    d = load_os(HERD_IMAGE)
    check_osparams(d, {"fs_label": "root", "marker": "m"})
    for params, field in (
        ({"colour": "red"}, "osparams.colour"),
        ({"marker": 1}, "osparams.marker"),
    ):
        with pytest.raises(ValidationError) as err:
            check_osparams(d, params)
        assert err.value.details["field"] == field
    with pytest.raises(ValidationError):
        check_osparams(d, ["fs_label"])


def test_instance_environment_follows_the_ganeti_os_interface(tmp_path: Path) -> None:
    d = load_os(HERD_IMAGE)
    disks = [sparse(tmp_path / "d0"), sparse(tmp_path / "d1")]
    s = spec("herd-image+blank", disks=2, osparams={"fs_label": "lbl"})
    s["disks"][1].update(mode="ro", name="data", params={"driver": "blktap"})  # type: ignore[index]
    env = instance_environment(d, s, disks, debug=1)
    assert env == {
        "OS_API_VERSION": "20",
        "OS_NAME": "herd-image",
        "OS_VARIANT": "blank",
        "DEBUG_LEVEL": "1",
        "PATH": "/sbin:/bin:/usr/sbin:/usr/bin",
        "OSP_FS_LABEL": "lbl",
        "INSTANCE_NAME": "web1",
        "INSTANCE_OS": "herd-image+blank",
        "INSTANCE_UUID": "inst-uuid-1",
        "HYPERVISOR": "kvm",
        "DISK_COUNT": "2",
        "DISK_0_PATH": disks[0],
        "DISK_0_ACCESS": "rw",
        "DISK_0_BACKEND_TYPE": "file:loop",
        "DISK_0_UUID": "disk-0",
        "DISK_0_FRONTEND_TYPE": "virtio",
        "DISK_1_PATH": disks[1],
        "DISK_1_ACCESS": "ro",
        "DISK_1_BACKEND_TYPE": "file:blktap",
        "DISK_1_UUID": "disk-1",
        "DISK_1_NAME": "data",
        "DISK_1_FRONTEND_TYPE": "virtio",
        "NIC_COUNT": "2",
        "NIC_0_MAC": "aa:00:00:00:00:01",
        "NIC_0_UUID": "nic-0",
        "NIC_0_MODE": "bridged",
        "NIC_0_IP": "192.0.2.10",
        "NIC_0_LINK": "br0",
        "NIC_0_BRIDGE": "br0",
        "NIC_0_FRONTEND_TYPE": "e1000",
        "NIC_1_MAC": "aa:00:00:00:00:02",
        "NIC_1_UUID": "nic-1",
        "NIC_1_MODE": "routed",
        "NIC_1_LINK": "rt100",
        "NIC_1_FRONTEND_TYPE": "e1000",
        "INSTANCE_BE_memory": "512",
        "INSTANCE_BE_vcpus": "2",
        "INSTANCE_HV_disk_type": "virtio",
        "INSTANCE_HV_nic_type": "e1000",
        "INSTANCE_HV_acpi": "True",
    }


def test_block_devices_are_block_backends(tmp_path: Path) -> None:
    block = next(
        (
            f"/dev/{n}"
            for n in ("loop0", "sda", "vda", "nvme0n1")
            if Path(f"/dev/{n}").is_block_device()
        ),
        None,
    )
    if block is None:
        pytest.skip("no block device node on this machine")
    env = instance_environment(load_os(HERD_IMAGE), spec(), [block])
    assert env["DISK_0_BACKEND_TYPE"] == "block"


@pytest.mark.parametrize(
    ("change", "paths", "field"),
    [
        ({}, [], "disk_paths"),
        ({}, ["/does/not/exist"], "disk_paths[0]"),
        ({}, ["/dev/null"], "disk_paths[0]"),
        ({"name": "../evil"}, None, "spec.name"),
        ({"hypervisor": ""}, None, "spec.hypervisor"),
        ({"disks": "x"}, None, "spec.disks"),
        ({"nics": [{"mode": "bridged"}]}, None, "spec.nics[0]"),
        ({"hvparams": []}, None, "spec.hvparams"),
        ({"os": "herd-image+huge"}, None, "spec.os"),
        ({"osparams": {"nope": "1"}}, None, "spec.osparams.nope"),
    ],
)
def test_bad_specs_name_the_field(
    tmp_path: Path, change: dict[str, object], paths: list[str] | None, field: str
) -> None:
    disk = sparse(tmp_path / "d0")
    with pytest.raises(ValidationError) as err:
        instance_environment(
            load_os(HERD_IMAGE), {**spec(), **change}, [disk] if paths is None else paths
        )
    assert err.value.details["field"] == field


def test_disk_mode_is_checked(tmp_path: Path) -> None:
    s = spec()
    s["disks"][0]["mode"] = "rwx"  # type: ignore[index]
    with pytest.raises(ValidationError) as err:
        instance_environment(load_os(HERD_IMAGE), s, [sparse(tmp_path / "d0")])
    assert err.value.details["field"] == "spec.disks[0].mode"
