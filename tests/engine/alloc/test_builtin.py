"""The built-in allocator: hard rules, N+1, preferences, relocation and evacuation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herd.alloc.builtin import (
    Move,
    check_n1,
    evacuate,
    place,
    relocate,
    search,
)
from herd.alloc.model import InstanceRequest, Snapshot
from herd.errors import PrerequisiteError, ValidationError
from tests.engine.alloc.strategies import (
    cluster,
    drbd,
    loaded_snapshot,
    node,
    plain,
    requests_st,
)


def test_skips_drained_offline_non_vm_capable_and_dead_nodes() -> None:
    snap = cluster(
        node("a", drained=True),
        node("b", offline=True),
        node("c", vm_capable=False),
        node("d", live=False),
        node("e", free=4096),
    )
    placed = place(snap, plain("i1"))
    assert placed.primary == "e"
    _, reasons = search(snap, plain("i1"))
    assert reasons["a"] == ["as primary: drained"]
    assert reasons["b"] == ["as primary: offline"]
    assert reasons["c"] == ["as primary: not vm_capable"]
    assert "no live facts" in reasons["d"][0]


def test_prefers_the_emptier_node_and_breaks_ties_by_name() -> None:
    snap = cluster(node("a", free=8000), node("b", free=30000), node("c", free=30000))
    assert place(snap, plain("i1")).primary == "b"
    tied = cluster(node("z"), node("y"), node("x"))
    assert place(tied, plain("i1")).primary == "x"
    assert place(tied, drbd("i2")).nodes == ("x", "y")


def test_cpu_and_disk_count_in_the_score() -> None:
    busy_cpu = cluster(node("a", cpus=1), node("b", cpus=8))
    assert place(busy_cpu, plain("i1")).primary == "b"
    full_disk = cluster(node("a", free_disk=5000), node("b", free_disk=90000))
    assert place(full_disk, plain("i1")).primary == "b"


def test_mirrored_secondary_is_in_the_same_group_and_not_the_primary() -> None:
    # The emptiest nodes of each group are alone in it, so a pair must use group g2.
    snap = cluster(
        node("a", group="g1", free=32000),
        node("b", group="g2", free=20000),
        node("c", group="g2", free=10000),
    )
    placed = place(snap, drbd("i1"))
    assert placed.nodes == ("b", "c")
    assert placed.reasons[0] == "group g2 (preferred)"
    assert place(snap, plain("i2")).primary == "a"


def test_refuses_what_fits_nowhere_with_reasons_per_node() -> None:
    snap = cluster(node("a", free=512), node("b", free_disk=100), node("c", cpus=1))
    with pytest.raises(PrerequisiteError) as err:
        place(snap, plain("big", memory=1024, disk=2048, vcpus=5))
    reasons = err.value.details["reasons"]
    assert "memory: needs 1024 MiB, has 512 MiB free" in reasons["a"][0]
    assert any("disk: needs 2048 MiB in pool lvm" in r for r in reasons["b"])
    assert any("vcpus: 0 used + 5 > limit 4" in r for r in reasons["c"])
    assert "big" in err.value.message


def test_last_resort_groups_only_when_no_preferred_group_fits() -> None:
    policies = {"main": "preferred", "spare": "last_resort", "closed": "unallocable"}
    roomy = cluster(
        node("m1", "main", free=2048),
        node("s1", "spare"),
        node("x1", "closed"),
        policies=policies,
    )
    assert place(roomy, plain("i1", memory=1024)).primary == "m1"
    assert place(roomy, plain("i2", memory=4096)).primary == "s1"
    # An unallocable group is never chosen, even when nothing else fits.
    full = cluster(node("m1", "main", free=100), node("x1", "closed"), policies=policies)
    with pytest.raises(PrerequisiteError):
        place(full, plain("i3"))


def test_explicit_group_is_honoured_and_checked() -> None:
    snap = cluster(
        node("a", "g1", free=30000),
        node("b", "g2", free=1000),
        policies={"g1": "preferred", "g2": "preferred", "g3": "unallocable"},
    )
    spec = InstanceRequest("i1", 512, group="g2", disks=(10,), disk_template="plain")
    assert place(snap, spec).primary == "b"
    with pytest.raises(ValidationError):
        place(snap, InstanceRequest("i2", 512, group="nope", disk_template="plain"))
    with pytest.raises(PrerequisiteError, match="unallocable"):
        place(snap, InstanceRequest("i3", 512, group="g3", disk_template="plain"))


def n1_cluster() -> Snapshot:
    """b replicates 6000 MiB for a and has 6000 MiB free: exactly N+1 clean."""
    snap = cluster(node("a", free=30000), node("b", free=6000), node("c", free=9000))
    return snap.place(drbd("old", memory=6000), "a", "b")


def test_check_n1_reports_the_worst_primary_per_node() -> None:
    snap = n1_cluster()
    assert check_n1(snap) == []
    broken = snap.place(drbd("more", memory=500), "a", "b")
    (failure,) = check_n1(broken)
    assert (failure.node, failure.primary, failure.needed, failure.free) == ("b", "a", 6500, 6000)
    assert failure.instances == ("more", "old")
    assert "b cannot absorb a failover of a" in str(failure)


def test_refuses_secondaries_that_would_break_n1() -> None:
    snap = n1_cluster()
    placed = place(snap, drbd("new", memory=500))
    # b would need 6500 MiB for a's failover: the pair (a, b) is not allowed.
    assert placed.nodes != ("a", "b")
    assert check_n1(snap.place(drbd("new", memory=500), *placed.nodes)) == []
    _, reasons = search(snap, drbd("new", memory=500), only_nodes={"a", "b"})
    assert any("N+1: failover of a would need 6500 MiB" in r for r in reasons["b"])


def test_refuses_primaries_whose_failover_reserve_would_be_eaten() -> None:
    # b must keep 6000 MiB for a; taking 1000 MiB as a primary would leave 5000.
    snap = cluster(node("a", free=30000), node("b", free=6000))
    snap = snap.place(drbd("old", memory=6000), "a", "b")
    _, reasons = search(snap, plain("new", memory=1000), only_nodes={"b"})
    assert reasons["b"] == [
        "as primary: N+1: would keep 5000 MiB free, needs 6000 MiB to absorb a failover"
    ]


def test_auto_balance_off_instances_do_not_reserve_failover_memory() -> None:
    snap = cluster(node("a", free=30000), node("b", free=1000))
    spec = InstanceRequest("old", 6000, disks=(10,), auto_balance=False)
    assert check_n1(snap.place(spec, "a", "b")) == []


def test_relocate_picks_a_new_secondary_in_the_group() -> None:
    snap = cluster(
        node("a"), node("b"), node("c", free=20000), node("d", free=30000), node("x", "g2")
    )
    snap = snap.place(drbd("i1"), "a", "b")
    placed = relocate(snap, "i1")
    assert (placed.primary, placed.secondary) == ("a", "d")
    assert relocate(snap, "i1", only_nodes={"c"}).secondary == "c"
    with pytest.raises(PrerequisiteError):
        relocate(snap, "i1", only_nodes={"x"})
    with pytest.raises(ValidationError):
        relocate(snap.place(plain("p1"), "a", None), "p1")


def test_evacuate_plans_failover_replace_and_move_in_order() -> None:
    snap = cluster(node("a"), node("b"), node("c", free=20000), node("d", free=25000))
    snap = snap.place(drbd("pri"), "a", "b")
    snap = snap.place(drbd("sec"), "c", "a")
    snap = snap.place(plain("solo"), "a", None)
    plan = evacuate(snap, "a")
    assert plan.failed == {}
    assert plan.moves == (
        Move("pri", "failover", "a", "b"),
        Move("pri", "replace-secondary", "a", "d"),
        # b only lost 1024 MiB to the failover and is still the emptiest node.
        Move("sec", "replace-secondary", "a", "b"),
        Move("solo", "move", "a", "b"),
    )
    after = plan.snapshot
    assert after is not None
    assert after.nodes["a"].primary_instances == ()
    assert after.nodes["a"].secondary_instances == ()
    assert (after.instances["pri"].primary, after.instances["pri"].secondary) == ("b", "d")
    assert check_n1(after) == []
    only_secondaries = evacuate(snap, "a", mode="secondary-only")
    assert [m.instance for m in only_secondaries.moves] == ["sec"]


def test_evacuate_reports_instances_that_cannot_move() -> None:
    snap = cluster(node("a"), node("b"), node("c", "g2"))
    snap = snap.place(drbd("pri"), "a", "b")
    plan = evacuate(snap, "a")
    assert plan.moves == ()
    assert plan.failed["pri"]
    with pytest.raises(ValidationError):
        evacuate(snap, "a", mode="sideways")  # type: ignore[arg-type]


@settings(max_examples=300)
@given(snap=loaded_snapshot(), spec=requests_st)
def test_placements_obey_the_hard_rules_and_never_add_n1_failures(
    snap: Snapshot, spec: InstanceRequest
) -> None:
    found, reasons = search(snap, spec)
    if found is None:
        assert reasons or not snap.nodes
        return
    chosen = [snap.nodes[n] for n in found.nodes]
    assert len(chosen) == spec.required_nodes
    for n in chosen:
        assert not (n.drained or n.offline) and n.vm_capable and n.live
    if spec.mirrored:
        assert found.primary != found.secondary
        assert chosen[0].group == chosen[1].group
    primary = chosen[0]
    assert primary.free_memory >= spec.memory
    for n in chosen:
        assert n.disk_free(spec.pool) >= spec.disk_need
    before = {f.node for f in check_n1(snap)}
    after = {f.node for f in check_n1(snap.place(spec, found.primary, found.secondary))}
    assert after <= before


@settings(max_examples=200)
@given(
    free=st.lists(st.integers(1024, 32768), min_size=2, max_size=6, unique=True),
    template=st.sampled_from(["drbd", "plain"]),
)
def test_the_emptiest_node_wins_when_nodes_differ_only_in_free_memory(
    free: list[int], template: str
) -> None:
    snap = cluster(*(node(f"n{i}", free=f) for i, f in enumerate(free)))
    spec = InstanceRequest("i", 512, 1, (100,), template)
    emptiest = max(range(len(free)), key=lambda i: free[i])
    assert place(snap, spec).primary == f"n{emptiest}"
