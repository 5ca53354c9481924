"""The state-reading handlers called directly with a context of fakes: who may read the
dump and in which order its checks refuse, and what a live query needs. Real objects and
real nodes are read in tests/engine/api/test_secrets.py and the lab tests."""

from __future__ import annotations

from typing import Any

import pytest

from herd.api import queries
from herd.api.context import ApiContext, Request
from herd.api.server import LOCAL, Caller
from herd.auth import Principal
from herd.errors import ForbiddenError, HerdError, ValidationError

REMOTE = Caller("https", Principal("tokens", "ci", read_only=False), "192.0.2.9")


class EmptyStore:
    """A store with nothing in it: enough for the checks made before any object is read."""

    def list(self, kind: str) -> list[Any]:
        return []

    def dump(self) -> dict[str, Any]:
        return {"version": 1, "objects": {}}


@pytest.fixture
def ctx() -> ApiContext:
    return ApiContext(store=EmptyStore(), queue=None, locks=None, auth=None)  # type: ignore[arg-type]


def test_the_dump_is_for_local_root_only(ctx: ApiContext) -> None:
    assert queries.dump(ctx, Request({"secrets": "1"}, None, LOCAL))["objects"] == {}
    with pytest.raises(ForbiddenError, match="whole-state dump is readable only as root"):
        queries.dump(ctx, Request({}, None, REMOTE))


def test_a_malformed_secrets_flag_is_named_before_a_remote_caller_is_refused(
    ctx: ApiContext,
) -> None:
    with pytest.raises(ValidationError) as err:
        queries.dump(ctx, Request({"secrets": "yes"}, None, REMOTE))
    assert (err.value.details["field"], err.value.details["value"]) == ("secrets", "yes")


def test_live_state_is_only_for_instances(ctx: ApiContext) -> None:
    with pytest.raises(ValidationError) as err:
        queries.query_kind(ctx, Request({"live": "1"}, None, LOCAL), "nodes")
    assert err.value.details["field"] == "live"


def test_a_live_query_without_node_access_says_so(ctx: ApiContext) -> None:
    with pytest.raises(HerdError, match="no node access for live queries"):
        queries.query_kind(ctx, Request({"live": "1"}, None, LOCAL), "instances")
