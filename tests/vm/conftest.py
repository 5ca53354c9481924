"""VM tests share the ``vm`` marker, its skip rule and the session's guests with tests/lab."""

from tests.lab.conftest import pytest_configure, pytest_runtest_setup, vm_nodes

__all__ = ["pytest_configure", "pytest_runtest_setup", "vm_nodes"]
