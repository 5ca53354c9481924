"""The one redaction helper: secret op parameters, declared keys, secret values in text."""

from __future__ import annotations

from herd.ops.params import Param
from herd.redact import (
    REDACTED,
    find_redacted,
    redact_params,
    scrub,
    secret_strings,
    split_params,
)

PARAMS = (Param("name", str), Param("token", str, secret=True), Param("dump", dict, secret=True))
KEYS = frozenset({"secret", "domain_secret"})
DUMP = {"objects": {"cluster": [{"name": "alpha", "domain_secret": "d" * 64}]}}


def test_secret_params_are_replaced_and_kept_apart() -> None:
    values = {"name": "web", "token": "t0ps3cret-value", "dump": DUMP}
    public, secrets = split_params(PARAMS, values)
    assert public == {"name": "web", "token": REDACTED, "dump": REDACTED}
    assert secrets == {"token": "t0ps3cret-value", "dump": DUMP}
    assert values["token"] == "t0ps3cret-value"


def test_an_unset_secret_stays_unset() -> None:
    assert redact_params(PARAMS, {"name": "web", "token": None}) == {"name": "web", "token": None}
    assert split_params(PARAMS, {"token": None})[1] == {}


def test_scrub_hides_leaves_under_secret_keys_keeping_the_shape() -> None:
    doc = {"changes": {"domain_secret": {"before": "a" * 64, "after": "b" * 64}}, "n": 1}
    assert scrub(doc, KEYS) == {
        "changes": {"domain_secret": {"before": REDACTED, "after": REDACTED}},
        "n": 1,
    }


def test_scrub_cuts_secret_values_out_of_any_text() -> None:
    doc = {"message": "bad value 'hunter2-long' here", "list": ["hunter2-long", "ok"]}
    assert scrub(doc, KEYS, {"hunter2-long"}) == {
        "message": f"bad value '{REDACTED}' here",
        "list": [REDACTED, "ok"],
    }


def test_a_short_secret_is_hidden_only_as_a_whole_value() -> None:
    assert scrub(["ab", "grab"], KEYS, {"ab"}) == [REDACTED, "grab"]


def test_secret_strings_are_the_string_params_and_the_secret_leaves_of_documents() -> None:
    values = {"name": "web", "token": "t0ps3cret-value", "dump": DUMP}
    assert secret_strings(PARAMS, values, KEYS) == {"t0ps3cret-value", "d" * 64}
    redacted = redact_params(PARAMS, values)
    assert secret_strings(PARAMS, redacted, KEYS) == set()


def test_find_redacted_names_the_path_of_the_first_marker_under_a_secret_key() -> None:
    doc = {"a": [{"b": 1}, {"secret": REDACTED}]}
    assert find_redacted(doc, frozenset({"secret"}), "x") == "x.a[1].secret"
    assert find_redacted({"secret": {"deep": REDACTED}}, frozenset({"secret"})) == "secret.deep"
    assert find_redacted({"secret": "fine"}, frozenset({"secret"})) is None


def test_find_redacted_ignores_a_plain_field_that_reads_like_the_marker() -> None:
    # Hypothesis drew an instance whose hypervisor was the marker's own text.
    assert find_redacted({"hypervisor": REDACTED}, frozenset({"secret"})) is None
