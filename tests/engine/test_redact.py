"""The one redaction helper: secret op parameters, declared keys, secret values in text."""

from __future__ import annotations

import pytest

from herd.errors import NodeError
from herd.ops.params import Param
from herd.redact import (
    REDACTED,
    cut_key_material,
    find_redacted,
    redact_params,
    scrub,
    scrub_error,
    secret_leaves,
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
    assert scrub("drbdadm: shared-secret 'short7' refused", KEYS, {"short7"}) == (
        "drbdadm: shared-secret 'short7' refused"
    )


#: Key material as tools print it: the armour lines around base64 lines.
BODY = "MIIEowIBAAKCAQEAkeyMATERIALline1+/=\nb3BlbnNzaC1rZXktdjEAline2xyz\nQUFBQWxpbmUz\n"


def pem(kind: str) -> str:
    return f"-----BEGIN {kind}-----\n{BODY}-----END {kind}-----"


@pytest.mark.parametrize(
    "kind",
    [
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "PRIVATE KEY",
    ],
)
def test_a_private_key_in_an_error_is_hidden_and_the_text_around_it_kept(kind: str) -> None:
    error = {"message": f"load failed: {pem(kind)}\nsee the node log", "details": {"n": 1}}
    assert scrub(error, KEYS) == {
        "message": f"load failed: -----BEGIN {kind}-----{REDACTED}-----END {kind}-----\n"
        "see the node log",
        "details": {"n": 1},
    }


def test_every_key_block_of_a_text_is_hidden_and_text_between_them_kept() -> None:
    text = f"a {pem('RSA PRIVATE KEY')} b {pem('EC PRIVATE KEY')} c"
    cut = cut_key_material(text)
    assert "keyMATERIAL" not in cut
    assert cut.startswith("a -----BEGIN RSA PRIVATE KEY-----")
    assert " b -----BEGIN EC PRIVATE KEY-----" in cut
    assert cut.endswith("-----END EC PRIVATE KEY----- c")


def test_a_key_quoted_with_escaped_newlines_is_hidden() -> None:
    quoted = repr(pem("OPENSSH PRIVATE KEY"))
    assert "keyMATERIAL" not in cut_key_material(f"bad key file content {quoted}")


def test_a_key_cut_short_is_hidden_to_the_end_of_the_text() -> None:
    """A bounded stderr tail or a truncated message can end inside the key."""
    text = "stderr: -----BEGIN OPENSSH PRIVATE KEY-----\n" + BODY[:40]
    assert cut_key_material(text) == f"stderr: -----BEGIN OPENSSH PRIVATE KEY-----{REDACTED}"


def test_a_tail_that_starts_inside_a_key_loses_the_lines_before_the_end_line() -> None:
    text = f"{BODY}-----END RSA PRIVATE KEY-----\nexit status 1"
    assert cut_key_material(text) == f"{REDACTED}-----END RSA PRIVATE KEY-----\nexit status 1"


def test_a_public_key_or_certificate_is_left_alone() -> None:
    text = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\nssh-ed25519 AAAAC3Nz"
    assert scrub(text, KEYS) == text


def test_secret_leaves_are_the_strings_under_the_keys_of_any_document() -> None:
    args = {"disk": {"params": {"secret": "drbd-shared-1", "port": 11000}}, "secret": ""}
    assert secret_leaves(args, KEYS) == {"drbd-shared-1"}
    assert secret_leaves({"disk": {"params": {"secret": REDACTED}}}, KEYS) == set()


def test_scrub_error_cleans_the_error_itself() -> None:
    error = NodeError("drbdsetup --shared-secret=drbd-shared-1 failed", stderr="drbd-shared-1")
    assert scrub_error(error, KEYS, {"drbd-shared-1"}) is error
    assert error.message == str(error) == f"drbdsetup --shared-secret={REDACTED} failed"
    assert error.details == {"stderr": REDACTED}


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
