"""cluster.plan: init with declared params, modify differences, refuse the wrong cluster."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import HerdApiError
from ansible_collections.herd.cluster.plugins.modules.cluster import (
    INIT_FIELDS,
    MODIFY_FIELDS,
    plan,
)

CLUSTER = {
    "name": "c1",
    "master_node": "n1",
    "enabled_hypervisors": ["kvm"],
    "enabled_disk_templates": ["drbd", "plain"],
    "candidate_pool_size": 10,
    "compression_tools": ["gzip", "lz4"],
    "nicparams": {"link": "br0", "mode": "bridged"},
    "drbd_port_range": [11000, 14999],
    "tags": [],
}


def params(**given: Any) -> dict[str, Any]:
    return {
        **dict.fromkeys((*INIT_FIELDS, *MODIFY_FIELDS, "domain_secret")),
        "name": "c1",
        "state": "present",
        **given,
    }


SECRET = "ab" * 32


def test_the_domain_secret_reaches_init_and_a_differing_one_modify_never_the_diff() -> None:
    ops, diff = plan(None, params(master_node="n1", domain_secret=SECRET))
    assert ops[0]["domain_secret"] == SECRET
    assert SECRET not in str(diff)
    # The cluster's own secret (the master's dry run said so): nothing to do.
    assert plan(CLUSTER, params(domain_secret=SECRET), secret_differs=False) == ([], {})
    ops, diff = plan(CLUSTER, params(domain_secret=SECRET), secret_differs=True)
    assert ops == [{"op": "cluster.modify", "domain_secret": SECRET}]
    assert SECRET not in str(diff) and set(diff["after"]) == {"domain_secret"}


def test_init_requires_master_node_and_sends_declared_params() -> None:
    with pytest.raises(HerdApiError, match="master_node is required"):
        plan(None, params())
    ops, _ = plan(None, params(master_node="n1", enabled_hypervisors=["fake"]))
    assert ops == [
        {"op": "cluster.init", "name": "c1", "master_node": "n1", "enabled_hypervisors": ["fake"]}
    ]


def test_modify_only_differences() -> None:
    same = params(master_node="n1", compression_tools=["lz4", "gzip"], nicparams={"link": "br0"})
    assert plan(CLUSTER, same) == ([], {})
    ops, diff = plan(CLUSTER, params(candidate_pool_size=3, nicparams={"link": "br1"}))
    assert ops == [
        {
            "op": "cluster.modify",
            "candidate_pool_size": 3,
            "nicparams": {"link": "br1", "mode": "bridged"},
        }
    ]
    assert diff["before"] == {"candidate_pool_size": 10, "nicparams": CLUSTER["nicparams"]}


def test_drbd_port_range_is_compared_as_the_master_reports_it() -> None:
    assert plan(CLUSTER, params(drbd_port_range="11000-14999")) == ([], {})
    ops, diff = plan(CLUSTER, params(drbd_port_range="12000-12999"))
    assert ops == [{"op": "cluster.modify", "drbd_port_range": "12000-12999"}]
    assert diff == {
        "before": {"drbd_port_range": "11000-14999"},
        "after": {"drbd_port_range": "12000-12999"},
    }


def test_init_only_fields_reach_init_and_are_ignored_afterwards() -> None:
    init = params(master_node="n1", ssh_port=2222, host_key="ssh-ed25519 AAAA")
    ops, _ = plan(None, init)
    assert ops[0]["ssh_port"] == 2222 and ops[0]["host_key"] == "ssh-ed25519 AAAA"
    assert plan(CLUSTER, init) == ([], {})


def test_other_cluster_or_master_is_refused() -> None:
    with pytest.raises(HerdApiError, match="name"):
        plan(CLUSTER, params(name="c2", state="absent"))
    with pytest.raises(HerdApiError, match="master_node"):
        plan(CLUSTER, params(master_node="n9"))


def test_destroy() -> None:
    assert plan(CLUSTER, params(state="absent"))[0] == [{"op": "cluster.destroy"}]
    assert plan(None, params(state="absent")) == ([], {})
