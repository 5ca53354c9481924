#!/usr/bin/env bash
# ansible-lint (production profile) over the collection's roles and playbooks. The roles
# use the collection's own modules and roles by FQCN, so the checkout is made visible as
# ansible_collections/herd/cluster (a symlink in a throw-away tree) for the linter to
# resolve them.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ansible_collections/herd"
ln -s "$repo" "$work/ansible_collections/herd/cluster"

cd "$repo"
ANSIBLE_COLLECTIONS_PATH="$work" ansible-lint --nocolor -c tests/ansible/ansible-lint.yml \
  roles playbooks tests/ansible/integration/playbooks scripts/demo-drbd.yml "$@"
