#!/usr/bin/env bash
# ansible-test units on what the collection ships (see collection-tree.sh): the module and
# module_utils unit tests, copied to the installed collection's tests/unit/, run by
# ansible-test's own pytest setup against the installed code rather than the checkout.
# The venv sees the system site-packages: some tests drive a real master (the engine).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/collection-tree.sh"

# Only the plugins' tests: tests/ansible/unit/docs/ tests the checkout's own doc tooling.
mkdir -p "$dest/tests/unit"
cp -r "$repo"/tests/ansible/unit/{__init__.py,conftest.py,plugins} "$dest/tests/unit/"
find "$dest/tests/unit" -name __pycache__ -prune -exec rm -rf {} +
# The tests borrow the engine's test harness (a master in a thread) from the checkout.
printf '%s\n' "$repo" > "$dest/tests/unit/herd-checkout"
stand_in_for_get_pip

cd "$dest"
ansible-test units --venv --venv-system-site-packages --requirements --python 3.11 "$@"
