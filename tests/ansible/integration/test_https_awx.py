"""What AWX needs besides the modules: the execution environment definition and the
credential type for the HTTPS API.

The EE file is checked by ansible-builder itself (``create`` writes the build context, no
container runtime needed) and the collection copied into that context is installed with
ansible-galaxy; the credential type's injectors are rendered the way AWX renders them and
the resulting environment is used to reach a real master over HTTPS.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from herd.client import Client
from tests.ansible.integration.runner import REPO
from tests.engine.api.https_master import start_https_master

EE_FILE = REPO / "meta" / "execution-environment.yml"
CREDENTIAL_TYPE = REPO / "docs" / "awx" / "credential-type.yml"


def connection_env_vars() -> dict[str, str]:
    """Env variable -> module option, from the collection's own argument spec."""
    spec = importlib.util.spec_from_file_location(
        "herd_client_for_awx_test", REPO / "plugins" / "module_utils" / "herd_client.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = {}
    for option, argspec in module.CONNECTION_ARGSPEC.items():
        if "fallback" in argspec:
            for var in argspec["fallback"][1]:
                out[var] = option
    return out


def render_injectors(inputs: dict[str, str], files_dir: Path) -> dict[str, str]:
    """AWX's rendering: ``file`` injectors become temp files named by ``tower.filename``,
    then ``env`` templates are rendered with the inputs and those file names."""
    ctype = yaml.safe_load(CREDENTIAL_TYPE.read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    filenames = {}
    for key, template in ctype["injectors"].get("file", {}).items():
        name = key.removeprefix("template.")
        path = files_dir / name
        path.write_text(env.from_string(template).render(**inputs))
        filenames[name] = str(path)
    context: dict[str, Any] = {**inputs, "tower": {"filename": filenames}}
    return {k: env.from_string(v).render(**context) for k, v in ctype["injectors"]["env"].items()}


def test_credential_type_declares_its_inputs_and_feeds_the_modules() -> None:
    ctype = yaml.safe_load(CREDENTIAL_TYPE.read_text())
    fields = {f["id"]: f for f in ctype["inputs"]["fields"]}
    assert set(fields) == {"api_url", "api_token", "ca_cert"}
    assert fields["api_token"]["secret"] is True
    assert set(ctype["inputs"]["required"]) <= set(fields)
    options = {connection_env_vars()[var] for var in ctype["injectors"]["env"]}
    assert options == {"api_url", "api_token", "ca_path"}


def test_credential_type_environment_reaches_the_master(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    https = start_https_master(tmp_path / "master")
    try:
        inputs = {
            "api_url": https.url,
            "api_token": https.running.api.create_token("awx"),
            "ca_cert": https.ca_file.read_text(),
        }
        env = render_injectors(inputs, tmp_path)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("HERD_SOCKET", raising=False)
        with Client() as client:
            assert client.remote
            assert client.info()["cluster"] == "alpha"
    finally:
        https.running.stop()


def test_execution_environment_builds_a_context_with_the_collection(tmp_path: Path) -> None:
    builder = shutil.which("ansible-builder") or pytest.skip("ansible-builder is not installed")
    context = tmp_path / "context"
    subprocess.run(
        [
            builder,
            "create",
            "-f",
            str(EE_FILE),
            "-c",
            str(context),
            "--output-filename",
            "Containerfile",
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-core>=2.16,<2.20" in containerfile
    assert "ansible-galaxy collection install" in containerfile
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert requirements == {"collections": [{"name": "/build/herd.cluster", "type": "dir"}]}

    copied = context / "_build" / "herd.cluster"
    installed = tmp_path / "installed"
    subprocess.run(
        ["ansible-galaxy", "collection", "install", str(copied), "-p", str(installed)],
        check=True,
        capture_output=True,
    )
    root = installed / "ansible_collections" / "herd" / "cluster"
    modules = sorted(p.name for p in (root / "plugins" / "modules").glob("*.py"))
    assert modules == sorted(p.name for p in (REPO / "plugins" / "modules").glob("*.py"))
    introspect = subprocess.run(
        [
            sys.executable,
            str(context / "_build" / "scripts" / "introspect.py"),
            "introspect",
            str(installed),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert yaml.safe_load(introspect.stdout) == {"python": [], "system": []}
