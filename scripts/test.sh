#!/usr/bin/env bash
# The test command: installs what is missing, lints, then runs the whole suite.
# Lab tests need root (network namespaces, sshd); they skip with a reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ruff check .
ruff format --check .
# Strict type check of the engine ([tool.mypy] in engine/pyproject.toml).
(cd engine && python3 -m mypy)
# ansible-test sanity, full default set, on the tarball the collection ships as.
bash tests/ansible/run-sanity.sh
# ansible-test units on the same tarball, and antsibull-docs' lint of every plugin's docs.
bash tests/ansible/run-units.sh
bash tests/ansible/run-docs-lint.sh
python3 -m pytest -q "$@"
