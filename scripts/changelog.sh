#!/usr/bin/env bash
# Writes CHANGELOG.rst from changelogs/fragments/ with antsibull-changelog, as the release
# notes of the version galaxy.yml names, without consuming the fragments: the release is
# cut in a throw-away copy, so the fragments stay until the version is really released
# (then `antsibull-changelog release` runs in the checkout itself and clears them).
# tests/scripts/test_changelog.py fails when CHANGELOG.rst is not what this writes.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/CHANGELOG.rst}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
copy="$work/ansible_collections/herd/cluster"
mkdir -p "$copy"
cp -r "$repo"/{galaxy.yml,changelogs,plugins,roles,playbooks,meta} "$copy/"
version="$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' "$repo/galaxy.yml")"
# The date only reaches changelog.yaml, which the copy keeps to itself.
(cd "$copy" && antsibull-changelog release --version "$version" --date 1970-01-01 2>/dev/null)
cp "$copy/CHANGELOG.rst" "$out"
