"""The RAPI users file: Ganeti's format, its three password forms, reload on change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from herd.api.rapi.users import UsersFile, ha1, parse_users
from herd.errors import AuthenticationError, ValidationError

FILE = """
# Ganeti's own example, plus a bare password and a read option
jack {HA1}%s write
# prefixes in any case
jill {CLEARTEXT}hill read
bob plain
hash {cleartext}ab#cd write
"""


def write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)
    # Same size edits within one mtime tick must still be seen: bump the time explicitly.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def users(tmp_path: Path) -> UsersFile:
    path = tmp_path / "users"
    write(path, FILE % ha1("jack", "abc123"))
    return UsersFile(path)


def test_ha1_is_ganetis_digest_of_name_realm_password() -> None:
    # printf 'jack:Ganeti Remote API:abc123' | md5sum, as Ganeti's docs make one.
    assert ha1("jack", "abc123") == "54c12257ee9be413f2f3182435514aae"
    assert ha1("jack", "abc123") != ha1("jill", "abc123")


def test_each_password_form_and_option_is_understood(users: UsersFile) -> None:
    jack = users.authenticate("jack", "abc123")
    assert (jack.kind, jack.name, jack.read_only) == ("rapi user", "jack", False)
    assert users.authenticate("jill", "hill").read_only
    assert users.authenticate("bob", "plain").read_only  # no "write": read only


@pytest.mark.parametrize(
    ("name", "password"),
    [("jack", "wrong"), ("jack", ha1("jack", "abc123")), ("nobody", "x"), ("jill", "")],
)
def test_wrong_passwords_and_unknown_users_are_refused(
    users: UsersFile, name: str, password: str
) -> None:
    with pytest.raises(AuthenticationError, match="invalid credentials"):
        users.authenticate(name, password)


def test_an_edit_takes_effect_for_the_next_login(users: UsersFile) -> None:
    assert users.authenticate("jill", "hill").read_only
    write(users.path, "jill {cleartext}hill write\n")
    assert not users.authenticate("jill", "hill").read_only
    with pytest.raises(AuthenticationError):
        users.authenticate("bob", "plain")


def test_a_missing_file_lets_nobody_in(users: UsersFile) -> None:
    users.path.unlink()
    with pytest.raises(AuthenticationError):
        users.authenticate("jill", "hill")
    assert users.users() == {}


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("jack\n", "users line 1"),
        ("jack pw write extra\n", "users line 1 options"),
        ("\njack pw admin\n", "users line 2 options"),
    ],
)
def test_malformed_lines_are_refused_naming_the_line(text: str, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_users(text, "users")
    assert err.value.details["field"] == field


def test_options_may_be_a_comma_list() -> None:
    assert parse_users("a pw read,write\n")["a"].write


def test_a_hash_inside_a_password_is_part_of_it(users: UsersFile) -> None:
    """As Ganeti reads the file: only a line starting with # is a comment."""
    assert not users.authenticate("hash", "ab#cd").read_only
    with pytest.raises(AuthenticationError):
        users.authenticate("hash", "ab")


def test_a_refused_line_is_named_by_number_never_quoted() -> None:
    with pytest.raises(ValidationError) as err:
        parse_users("jack {cleartext}s3cret-pw\nbroken\n", "users")
    assert err.value.details["field"] == "users line 2"
    assert "s3cret" not in str(err.value.to_dict()) and "broken" not in str(err.value.to_dict())


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_file_others_may_read_lets_nobody_in_and_says_why_only_in_the_log(
    users: UsersFile, mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    users.path.chmod(mode)
    with pytest.raises(AuthenticationError, match="invalid credentials") as err:
        users.authenticate("jack", "abc123")
    assert str(users.path) not in str(err.value.to_dict())
    assert f"{mode:04o}" in caplog.text and "every Basic login is refused" in caplog.text
    users.path.chmod(0o600)
    assert users.authenticate("jack", "abc123").name == "jack"


def test_a_malformed_file_refuses_logins_without_quoting_it(
    users: UsersFile, caplog: pytest.LogCaptureFixture
) -> None:
    write(users.path, "jack {cleartext}s3cret-pw\nbroken\n")
    with pytest.raises(AuthenticationError) as err:
        users.authenticate("jack", "s3cret-pw")
    assert "s3cret" not in str(err.value.to_dict()) and "s3cret" not in caplog.text
    assert "line 2" in caplog.text
