"""OS definitions on a node: discovery, validation and script environments (Ganeti OS API).

An OS definition is a directory holding the scripts ``create``, ``import``, ``export``,
``rename`` (and ``verify`` from API 20) plus the text files ``ganeti_api_version``,
``variants.list`` (API 15+) and ``parameters.list`` (API 20).  We speak the same API as
Ganeti so the OS definitions people already have (Debian's ``ganeti-os-noop``,
``ganeti-instance-debootstrap``, in-house ones) work unchanged on Herd nodes.

Nothing here runs a script; :mod:`herd.node.os.runner` does.  This module decides *what*
would run and with which environment, so those rules can be tested without processes.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.errors import NotFoundError, PrerequisiteError, ValidationError

#: API versions this node speaks; an OS is usable if it declares at least one of them.
SUPPORTED_API_VERSIONS = frozenset({10, 15, 20})
API_VARIANTS = 15
API_PARAMETERS = 20

#: Ganeti's directories as Debian configures them, then ours.  The state root's ``os``
#: directory is searched before all of these (see :func:`search_path`).
DEFAULT_SEARCH_PATH = (
    "/srv/ganeti/os",
    "/usr/local/lib/ganeti/os",
    "/usr/lib/ganeti/os",
    "/usr/share/ganeti/os",
    "/usr/share/herd/os",
)
SEARCH_PATH_ENV = "HERD_OS_SEARCH_PATH"

SCRIPTS = ("create", "import", "export", "rename", "verify")
API_FILE = "ganeti_api_version"
VARIANTS_FILE = "variants.list"
PARAMETERS_FILE = "parameters.list"

#: Ganeti cleans the environment and gives scripts this PATH; so do we, so a script
#: behaves the same whether the agent was started from a shell or from sshd.
SCRIPT_PATH = "/sbin:/bin:/usr/sbin:/usr/bin"

#: Instance names become file names (logs) and hostnames inside guests.
_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,253}$")
_ENV_KEY = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class OSDefinition:
    """One OS directory as found on disk; ``error`` says why it is unusable, if it is."""

    name: str
    path: Path
    api_versions: tuple[int, ...]
    variants: tuple[str, ...]
    parameters: tuple[tuple[str, str], ...]
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.error is None

    @property
    def api_version(self) -> int:
        """The version both sides speak: the highest one we share (Ganeti's rule)."""
        return max(SUPPORTED_API_VERSIONS.intersection(self.api_versions))

    def script(self, name: str) -> Path | None:
        """Path of script ``name``, or None when this OS's API version has no such script."""
        if name == "verify" and self.api_version < API_PARAMETERS:
            return None
        return self.path / name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "valid": self.valid,
            "error": self.error,
            "api_versions": list(self.api_versions),
            "api_version": self.api_version if self.valid else None,
            "variants": list(self.variants),
            "parameters": [{"name": n, "description": d} for n, d in self.parameters],
        }


def search_path(root: Path, env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """Where OS definitions are looked up, first match wins.

    ``<root>/os`` comes first so a lab node or a test (and later the master, through
    ``write_file``) can provide definitions without touching system directories;
    ``HERD_OS_SEARCH_PATH`` (colon-separated) replaces the system defaults.
    """
    env = os.environ if env is None else env
    configured = env.get(SEARCH_PATH_ENV)
    system = [p for p in configured.split(":") if p] if configured else DEFAULT_SEARCH_PATH
    return (root / "os", *(Path(p) for p in system))


def split_os_name(value: object, field: str = "os") -> tuple[str, str | None]:
    """``"name+variant"`` as (name, variant); the variant is None when not given."""
    if not isinstance(value, str):
        raise ValidationError(field, value, "an OS name like 'name' or 'name+variant'")
    name, plus, variant = value.partition("+")
    if not name or "/" in name or name.startswith(".") or (plus and not variant):
        raise ValidationError(field, value, "an OS name like 'name' or 'name+variant'")
    return name, (variant if plus else None)


def list_os(path: Iterable[Path]) -> list[OSDefinition]:
    """Every OS directory in the search path, valid or not, the first of each name only.

    Later directories with the same name are hidden exactly as they are for lookups,
    so what is listed is what would run.
    """
    found: dict[str, OSDefinition] = {}
    for directory in path:
        try:
            entries = sorted(os.listdir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.startswith(".") or entry in found or not (directory / entry).is_dir():
                continue
            found[entry] = load_os(directory / entry)
    return sorted(found.values(), key=lambda d: d.name)


def find_os(name: str, path: Iterable[Path]) -> OSDefinition:
    """The usable OS ``name``: NotFoundError if absent, PrerequisiteError if broken."""
    dirs = list(path)
    for directory in dirs:
        candidate = directory / name
        if candidate.is_dir():
            definition = load_os(candidate)
            if not definition.valid:
                raise PrerequisiteError(
                    f"OS {name} at {candidate} is not usable: {definition.error}",
                    os=name,
                    path=str(candidate),
                    reason=definition.error,
                )
            return definition
    raise NotFoundError(
        f"OS {name} not found in {', '.join(map(str, dirs))}",
        field="os",
        value=name,
        search_path=[str(d) for d in dirs],
    )


def load_os(directory: Path) -> OSDefinition:
    """Read one OS directory; problems end up in ``error`` rather than raising."""
    name = directory.name
    try:
        versions = _read_api_versions(directory / API_FILE)
        if not SUPPORTED_API_VERSIONS.intersection(versions):
            raise _Invalid(
                f"API versions {list(versions)} not supported "
                f"(this node speaks {sorted(SUPPORTED_API_VERSIONS)})"
            )
        api = max(SUPPORTED_API_VERSIONS.intersection(versions))
        for script in SCRIPTS:
            if script != "verify" or api >= API_PARAMETERS:
                _check_file(directory / script, executable=True)
        variants: tuple[str, ...] = ()
        if api >= API_VARIANTS and (directory / VARIANTS_FILE).exists():
            variants = tuple(
                line.strip()
                for line in _read_text(directory / VARIANTS_FILE).splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            )
        parameters: tuple[tuple[str, str], ...] = ()
        if api >= API_PARAMETERS:
            _check_file(directory / PARAMETERS_FILE, executable=False)
            parameters = _parse_parameters(_read_text(directory / PARAMETERS_FILE))
    except _Invalid as exc:
        return OSDefinition(name, directory, (), (), (), error=str(exc))
    return OSDefinition(name, directory, versions, variants, parameters)


def resolve_variant(definition: OSDefinition, variant: str | None, field: str = "os") -> str:
    """The variant a script gets in OS_VARIANT ('' when the OS has none).

    A missing variant defaults to the first listed one, as Ganeti's node daemon does; a
    variant the OS does not list is refused rather than passed through, because a typo
    would otherwise silently install whatever the script falls back to.
    """
    if definition.api_version < API_VARIANTS or not definition.variants:
        if variant is not None:
            raise ValidationError(
                field,
                f"{definition.name}+{variant}",
                f"'{definition.name}' without a variant (it declares none)",
            )
        return ""
    if variant is None:
        return definition.variants[0]
    if variant not in definition.variants:
        allowed = ", ".join(f"{definition.name}+{v}" for v in definition.variants)
        raise ValidationError(
            field,
            f"{definition.name}+{variant}",
            f"one of {allowed}",
            f"OS {definition.name} has no variant '{variant}': allowed {allowed}",
        )
    return variant


def check_osparams(definition: OSDefinition, osparams: Any, field: str = "osparams") -> None:
    """Refuse parameters the OS does not declare, and values that are not strings.

    Ganeti's master rejects undeclared parameters; we check again on the node because a
    script never learns about a misspelt OSP_ variable, it just uses its default.
    """
    if not isinstance(osparams, dict):
        raise ValidationError(field, osparams, "an object of OS parameters")
    declared = [n for n, _ in definition.parameters]
    for key, value in osparams.items():
        if key not in declared:
            allowed = f"one of {declared}" if declared else f"none (OS {definition.name})"
            raise ValidationError(f"{field}.{key}", value, allowed)
        if not isinstance(value, str):
            raise ValidationError(f"{field}.{key}", value, "a string")


def core_environment(
    definition: OSDefinition, variant: str, osparams: Mapping[str, str], debug: int
) -> dict[str, str]:
    """Variables every script gets, whether or not an instance is involved (verify)."""
    if debug not in (0, 1):
        raise ValidationError("debug", debug, "0 or 1")
    env = {
        "OS_API_VERSION": str(definition.api_version),
        "OS_NAME": definition.name,
        "OS_VARIANT": variant,
        "DEBUG_LEVEL": str(debug),
        "PATH": SCRIPT_PATH,
    }
    for key, value in osparams.items():
        env[f"OSP_{key.upper()}"] = value
    return env


def instance_environment(
    definition: OSDefinition,
    spec: Mapping[str, Any],
    disk_paths: Sequence[str],
    debug: int = 0,
) -> dict[str, str]:
    """The full Ganeti environment for a script acting on the instance in ``spec``.

    ``spec`` is the instance spec the master sends (docs/design.md); ``disk_paths`` are
    the assembled devices or files, in disk order.  Names follow Ganeti's node daemon,
    including its ``INSTANCE_HV_<param>``/``INSTANCE_BE_<param>`` spelling.
    """
    name = instance_name(spec.get("name"), "spec.name")
    _, variant = split_os_name(spec.get("os"), "spec.os")
    osparams = {} if spec.get("osparams") is None else spec["osparams"]
    check_osparams(definition, osparams, "spec.osparams")
    resolved = resolve_variant(definition, variant, "spec.os")
    env = core_environment(definition, resolved, osparams, debug)
    hvparams = _mapping(spec, "hvparams")
    env.update(
        {
            "INSTANCE_NAME": name,
            "INSTANCE_OS": str(spec["os"]),
            "INSTANCE_UUID": str(spec.get("uuid") or ""),
            "HYPERVISOR": _string(spec, "hypervisor"),
        }
    )
    env.update(_disk_environment(spec, disk_paths, hvparams))
    env.update(_nic_environment(spec, hvparams))
    for kind, params in (("BE", _mapping(spec, "beparams")), ("HV", hvparams)):
        for key, value in params.items():
            if _ENV_KEY.match(key):
                env[f"INSTANCE_{kind}_{key}"] = str(value)
    return env


def prepare(
    root: Path, spec: Any, disk_paths: Sequence[str], debug: int = 0
) -> tuple[OSDefinition, dict[str, str]]:
    """The OS named by ``spec`` (searched from ``root``) and its scripts' environment."""
    if not isinstance(spec, dict):
        raise ValidationError("spec", spec, "an instance spec object")
    name, _ = split_os_name(spec.get("os"), "spec.os")
    definition = find_os(name, search_path(root))
    return definition, instance_environment(definition, spec, disk_paths, debug)


def instance_name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str) or not _INSTANCE_NAME.match(value):
        raise ValidationError(field, value, "a host name (letters, digits, '.', '-', '_')")
    return value


def _disk_environment(
    spec: Mapping[str, Any], disk_paths: Sequence[str], hvparams: Mapping[str, Any]
) -> dict[str, str]:
    disks = spec.get("disks")
    if not isinstance(disks, list):
        raise ValidationError("spec.disks", disks, "a list of disk specs")
    if len(disk_paths) != len(disks):
        raise ValidationError(
            "disk_paths", list(disk_paths), f"one path per disk of the spec ({len(disks)})"
        )
    env = {"DISK_COUNT": str(len(disks))}
    for idx, (disk, path) in enumerate(zip(disks, disk_paths, strict=True)):
        field = f"spec.disks[{idx}]"
        if not isinstance(disk, dict):
            raise ValidationError(field, disk, "a disk spec object")
        mode = disk.get("mode", "rw")
        if mode not in ("rw", "ro"):
            raise ValidationError(f"{field}.mode", mode, "'rw' or 'ro'")
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ValidationError(
                f"disk_paths[{idx}]", path, "an existing block device or file"
            ) from exc
        if stat.S_ISBLK(st.st_mode):
            backend = "block"
        elif stat.S_ISREG(st.st_mode):
            backend = f"file:{(disk.get('params') or {}).get('driver', 'loop')}"
        else:
            raise ValidationError(f"disk_paths[{idx}]", path, "a block device or regular file")
        env[f"DISK_{idx}_PATH"] = path
        env[f"DISK_{idx}_ACCESS"] = mode
        env[f"DISK_{idx}_BACKEND_TYPE"] = backend
        env[f"DISK_{idx}_UUID"] = str(disk.get("uuid") or "")
        if disk.get("name"):
            env[f"DISK_{idx}_NAME"] = str(disk["name"])
        if "disk_type" in hvparams:
            env[f"DISK_{idx}_FRONTEND_TYPE"] = str(hvparams["disk_type"])
    return env


def _nic_environment(spec: Mapping[str, Any], hvparams: Mapping[str, Any]) -> dict[str, str]:
    nics = spec.get("nics")
    if nics is None:
        nics = []
    if not isinstance(nics, list):
        raise ValidationError("spec.nics", nics, "a list of NIC specs")
    env = {"NIC_COUNT": str(len(nics))}
    for idx, nic in enumerate(nics):
        if not isinstance(nic, dict) or not isinstance(nic.get("mac"), str):
            raise ValidationError(f"spec.nics[{idx}]", nic, "a NIC spec with a 'mac'")
        mode, link = nic.get("mode") or "bridged", nic.get("link") or ""
        env[f"NIC_{idx}_MAC"] = nic["mac"]
        env[f"NIC_{idx}_UUID"] = str(nic.get("uuid") or "")
        env[f"NIC_{idx}_MODE"] = str(mode)
        if nic.get("name"):
            env[f"NIC_{idx}_NAME"] = str(nic["name"])
        if nic.get("ip"):
            env[f"NIC_{idx}_IP"] = str(nic["ip"])
        if link:
            env[f"NIC_{idx}_LINK"] = str(link)
            if mode == "bridged":
                env[f"NIC_{idx}_BRIDGE"] = str(link)
        if "nic_type" in hvparams:
            env[f"NIC_{idx}_FRONTEND_TYPE"] = str(hvparams["nic_type"])
    return env


def _mapping(spec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = spec.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"spec.{key}", value, "an object")
    return value


def _string(spec: Mapping[str, Any], key: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise ValidationError(f"spec.{key}", value, "a non-empty string")
    return value


class _Invalid(Exception):
    """Why an OS directory is unusable; turned into ``OSDefinition.error``."""


def _read_api_versions(path: Path) -> tuple[int, ...]:
    text = _read_text(path)
    try:
        versions = tuple(int(line) for line in text.split())
    except ValueError as exc:
        raise _Invalid(f"{API_FILE} holds a non-integer version: {exc}") from exc
    if not versions:
        raise _Invalid(f"{API_FILE} is empty")
    return versions


def _check_file(path: Path, executable: bool) -> None:
    try:
        st = path.stat()
    except OSError as exc:
        raise _Invalid(f"'{path.name}' is missing ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise _Invalid(f"'{path.name}' is not a regular file")
    if executable and not st.st_mode & stat.S_IXUSR:
        raise _Invalid(f"'{path.name}' is not executable")


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise _Invalid(f"cannot read '{path.name}': {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise _Invalid(f"'{path.name}' is not text") from exc


def _parse_parameters(text: str) -> tuple[tuple[str, str], ...]:
    params = []
    for line in text.splitlines():
        parts = line.split(None, 1)
        if not parts:
            continue
        if not _ENV_KEY.match(parts[0]):
            raise _Invalid(f"{PARAMETERS_FILE} declares an unusable name {parts[0]!r}")
        params.append((parts[0], parts[1].strip() if len(parts) > 1 else ""))
    return tuple(params)
