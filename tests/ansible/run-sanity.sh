#!/usr/bin/env bash
# ansible-test sanity, the full default test set, on what the collection ships (see
# collection-tree.sh). Only Python 3.11 (the controller's) is tested.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/collection-tree.sh"

# validate-modules insists on a GPLv3 header; the collection is Apache-2.0, an ignore Red
# Hat certification allows. ansible-test reads ignores per ansible-core version, so the one
# list is installed under this version's name (the tarball does not ship tests/).
core="$(python3 -c 'from ansible.release import __version__ as v; print(".".join(v.split(".")[:2]))')"
mkdir -p "$dest/tests/sanity"
cp "$repo/tests/ansible/sanity/ignore.txt" "$dest/tests/sanity/ignore-$core.txt"
stand_in_for_get_pip

cd "$dest"
ansible-test sanity --python 3.11 --requirements "$@"
