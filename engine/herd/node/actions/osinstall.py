"""Node actions installing and renaming instance OSes through Ganeti OS definitions.

Running a create script is destructive, so replaying ``os_create`` must not run it
again over a guest that has booted and written data since.  A record under
``<root>/os-installs/`` notes which OS was installed on which disks (by disk uuid); a
replay that matches it changes nothing.  New disks (new uuids) are a new install;
another OS on the same disks is refused unless ``reinstall`` says it is meant, and a
reinstall always runs: wiping the guest is what it asks for.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from herd.errors import ConflictError, NodeError, ValidationError
from herd.node.actions.files import read_file, write_file
from herd.node.actions.registry import NodeContext, action
from herd.node.os.api import (
    check_osparams,
    core_environment,
    find_os,
    instance_name,
    list_os,
    prepare,
    resolve_variant,
    search_path,
    split_os_name,
)
from herd.node.os.runner import log_path, run_script

CREATE_TIMEOUT = 3600.0
RENAME_TIMEOUT = 300.0
VERIFY_TIMEOUT = 60.0
INSTALLS_DIR = "os-installs"
_RECORD_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@action("os_list")
def os_list(ctx: NodeContext) -> dict[str, Any]:
    """Every OS definition this node can see, with why it is unusable when it is."""
    path = search_path(ctx.root)
    return {
        "changed": False,
        "search_path": [str(p) for p in path],
        "os": [d.to_dict() for d in list_os(path)],
    }


@action("os_create")
def os_create(
    ctx: NodeContext,
    spec: dict[str, Any],
    disk_paths: list[str],
    reinstall: bool = False,
    debug: int = 0,
    timeout: float = CREATE_TIMEOUT,
) -> dict[str, Any]:
    """Run the OS's create script on the instance's (assembled) disks."""
    definition, env = prepare(ctx.root, spec, disk_paths, debug)
    installed = f"{definition.name}+{env['OS_VARIANT']}" if env["OS_VARIANT"] else definition.name
    disks = [str(d.get("uuid") or "") for d in spec["disks"]]
    record = _read_record(ctx, spec)
    if record is not None and record.get("disks") == disks and not reinstall:
        if record.get("os") != installed:
            raise ConflictError(
                f"instance {env['INSTANCE_NAME']} already has OS {record.get('os')} on these "
                f"disks; installing {installed} needs reinstall",
                field="reinstall",
                installed=record.get("os"),
                requested=installed,
            )
        return {"changed": False, "os": installed, "log": record.get("log")}
    if reinstall:
        env["INSTANCE_REINSTALL"] = "1"
    log = log_path(ctx.root, env["INSTANCE_NAME"], "reinstall" if reinstall else "create")
    run_script(definition, "create", env, log, timeout)
    _write_record(
        ctx, spec, {"os": installed, "disks": disks, "name": env["INSTANCE_NAME"], "log": str(log)}
    )
    return {"changed": True, "os": installed, "log": str(log)}


@action("os_rename")
def os_rename(
    ctx: NodeContext,
    spec: dict[str, Any],
    old_name: str,
    disk_paths: list[str],
    debug: int = 0,
    timeout: float = RENAME_TIMEOUT,
) -> dict[str, Any]:
    """Run the rename script (``spec`` carries the new name) unless it already ran."""
    old = instance_name(old_name, "old_name")
    definition, env = prepare(ctx.root, spec, disk_paths, debug)
    record = _read_record(ctx, spec)
    if record is not None and record.get("name") == env["INSTANCE_NAME"]:
        return {"changed": False, "name": env["INSTANCE_NAME"], "log": record.get("log")}
    env["OLD_INSTANCE_NAME"] = old
    log = log_path(ctx.root, env["INSTANCE_NAME"], "rename")
    run_script(definition, "rename", env, log, timeout)
    if record is not None:
        _write_record(ctx, spec, {**record, "name": env["INSTANCE_NAME"], "log": str(log)})
    return {"changed": True, "name": env["INSTANCE_NAME"], "log": str(log)}


@action("os_verify")
def os_verify(
    ctx: NodeContext,
    name: str,
    osparams: dict[str, Any] | None = None,
    debug: int = 0,
    timeout: float = VERIFY_TIMEOUT,
) -> dict[str, Any]:
    """Check that OS ``name`` (with variant) exists here and accepts ``osparams``.

    The verify script (API 20) judges the values, and a refusal is a ValidationError
    because the parameters are what is wrong; OSes of older APIs have no script, so for
    them only the name, variant and the absence of parameters can be checked.
    """
    os_name, variant = split_os_name(name, "name")
    definition = find_os(os_name, search_path(ctx.root))
    resolved = resolve_variant(definition, variant, "name")
    params = osparams or {}
    check_osparams(definition, params)
    if definition.script("verify") is None:
        return {"changed": False, "os": definition.name, "variant": resolved, "log": None}
    env = core_environment(definition, resolved, params, debug)
    log = log_path(ctx.root, definition.name, "verify")
    try:
        run_script(definition, "verify", env, log, timeout, args=("parameters",))
    except NodeError as exc:
        if "exit_code" not in exc.details:
            raise
        raise ValidationError(
            "osparams",
            params,
            f"parameters OS {definition.name}'s verify script accepts",
            f"OS {definition.name} refused the parameters {params}: {exc.details['log_tail']}",
        ) from exc
    return {"changed": False, "os": definition.name, "variant": resolved, "log": str(log)}


def _record_path(spec: dict[str, Any]) -> str:
    key = spec.get("uuid") or spec.get("name")
    if not isinstance(key, str) or not _RECORD_KEY.match(key):
        raise ValidationError("spec.uuid", key, "a uuid (letters, digits, '.', '-', '_')")
    return str(Path(INSTALLS_DIR) / f"{key}.json")


def _read_record(ctx: NodeContext, spec: dict[str, Any]) -> dict[str, Any] | None:
    path = _record_path(spec)
    if not (ctx.root / path).exists():
        return None
    record = json.loads(read_file(ctx, path)["content"])
    return record if isinstance(record, dict) else None


def _write_record(ctx: NodeContext, spec: dict[str, Any], record: dict[str, Any]) -> None:
    write_file(ctx, _record_path(spec), json.dumps(record, sort_keys=True) + "\n", mode=0o600)
