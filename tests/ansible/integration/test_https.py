"""The herd.cluster modules against the master's HTTPS API, as AWX runs them: no socket, no
become, just ``api_url``, credentials and the cluster CA from module_defaults.

The master runs in this process with a seeded cluster (see tests/engine/api/https_master);
the playbook runs through ansible-runner, and the test reads its event stream for each
task's result and the changed counts, then checks the master's state itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from herd.crypto.ca import ClusterCA
from tests.ansible.integration.runner import Run, local_host, play
from tests.engine.api.https_master import MASTER_NODE, HTTPSMaster, start_https_master

PLAYBOOK: list[dict[str, Any]] = [
    {
        "name": "Drive the cluster over HTTPS",
        "hosts": "localhost",
        "gather_facts": False,
        "module_defaults": {
            "group/herd.cluster.herd": {
                "api_url": "{{ herd_api_url }}",
                "api_token": "{{ herd_token }}",
                "ca_path": "{{ herd_ca }}",
            }
        },
        "tasks": [
            {
                "name": "Group",
                "herd.cluster.group": {"name": "rack9", "alloc_policy": "last_resort"},
            },
            {
                "name": "Group again",
                "herd.cluster.group": {"name": "rack9", "alloc_policy": "last_resort"},
            },
            {"name": "Read back", "herd.cluster.cluster_info": {}},
            {
                "name": "Read as a user",
                "herd.cluster.cluster_info": {
                    "api_token": "{{ omit }}",
                    "api_user": "awx",
                    "api_password": "{{ herd_password }}",
                },
            },
            {
                "name": "Write with a read-only token",
                "herd.cluster.group": {"name": "rack10", "api_token": "{{ herd_ro_token }}"},
                "ignore_errors": True,
            },
            {
                "name": "Wrong token",
                "herd.cluster.cluster_info": {"api_token": "herd_wrong"},
                "ignore_errors": True,
            },
            {
                "name": "Foreign CA",
                "herd.cluster.cluster_info": {"ca_path": "{{ herd_foreign_ca }}"},
                "ignore_errors": True,
            },
        ],
    }
]


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HTTPSMaster]:
    started = start_https_master(tmp_path_factory.mktemp("https-master"))
    yield started
    started.running.stop()


def test_modules_over_https_with_token_user_and_ca(
    collections: Path, https: HTTPSMaster, tmp_path: Path
) -> None:
    api = https.running.api
    api.add_user("awx", "awx password")
    foreign = tmp_path / "foreign-ca.pem"
    foreign.write_bytes(ClusterCA.create("beta").cert_pem)
    playbook = tmp_path / "https.yml"
    playbook.write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    extravars = {
        "herd_api_url": https.url,
        "herd_ca": str(https.ca_file),
        "herd_token": api.create_token("awx"),
        "herd_ro_token": api.create_token("awx-ro", read_only=True),
        "herd_password": "awx password",
        "herd_foreign_ca": str(foreign),
    }
    inventory = {"all": {"hosts": {"localhost": local_host()}}}
    run: Run = play(collections, tmp_path / "run", inventory, playbook, extravars)

    assert run.rc == 0, run.failed_tasks
    assert run.failed_tasks == ["Write with a read-only token", "Wrong token", "Foreign CA"]
    assert run.changed() == 1
    assert run.result("Group")["changed"] is True and run.result("Group")["job_ids"]
    assert run.result("Group again")["changed"] is False
    assert not run.result("Group again")["job_ids"]
    for task in ("Read back", "Read as a user"):
        info = run.result(task)
        assert info["cluster"]["name"] == "alpha"
        assert [n["name"] for n in info["nodes"]] == [MASTER_NODE, "n2"]
    assert run.result("Write with a read-only token")["error"]["type"] == "ForbiddenError"
    assert run.result("Wrong token")["error"]["type"] == "AuthenticationError"
    assert "certificate not trusted" in run.result("Foreign CA")["msg"]

    (group,) = api.query("nodegroups", ["rack9"])
    assert group["alloc_policy"] == "last_resort"
    assert [g["name"] for g in api.query("nodegroups")] == ["default", "rack9"]
    (job,) = api.jobs()
    assert job["id"] == run.result("Group")["job_ids"][0]
    sources = [entry[:2] for entry in api.job(job["id"])["reason"]]
    assert sources[0][0] == "ansible:herd.cluster.group"
    assert sources[-1] == ["api:https", "token awx from 127.0.0.1"]
