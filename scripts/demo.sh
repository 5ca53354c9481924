#!/usr/bin/env bash
# The demo: two lab clusters, an instance moved between them, a DRBD failover on qemu
# guests. `bash scripts/demo.sh --no-drbd` skips the qemu part (the first run builds
# a guest image, ~2-3 minutes); `bash scripts/demo.sh down` removes everything.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "down" ]; then
  bash scripts/setup.sh
fi
exec python3 scripts/demo.py "$@"
