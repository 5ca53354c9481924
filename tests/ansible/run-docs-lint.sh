#!/usr/bin/env bash
# antsibull-docs lint-collection-docs on what the collection ships (see collection-tree.sh):
# the extra docs, and with --plugin-docs every plugin's and role's documentation (schema,
# markup, references to other plugins) as the Ansible docsite would render it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/collection-tree.sh"

cd "$dest"
ANSIBLE_COLLECTIONS_PATH="$work/tree" antsibull-docs lint-collection-docs --plugin-docs . "$@"
