#!/usr/bin/env bash
# ansible-lint, production profile, as a user runs it at the repo root: .ansible-lint says
# what it covers (the roles, playbooks, Molecule scenarios and test playbooks) and how.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ansible-lint --nocolor "$@"
