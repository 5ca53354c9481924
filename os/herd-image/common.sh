# Shared by the herd-image scripts; sourced, never run.
# Everything a script prints goes to the log Herd keeps under <node root>/os-logs/.

set -eu
[ "${DEBUG_LEVEL:-0}" = 1 ] && set -x

PART_START_SECTORS=2048          # 1 MiB: the usual alignment, room for a boot loader
PART_OFFSET=$((PART_START_SECTORS * 512))
MIN_DISK_BYTES=$((8 * 1024 * 1024))

die() {
  echo "herd-image: $*" >&2
  exit 1
}

usage_if_asked() {
  case "${1:-}" in
    -h|--help) echo "usage: $0 (driven by the Ganeti OS API environment, see ganeti-os-interface(7))"; exit 0 ;;
  esac
}

disk_bytes() {
  if [ -b "$1" ]; then
    blockdev --getsize64 "$1"
  elif [ -f "$1" ]; then
    stat -c %s "$1"
  else
    die "disk $1 is neither a block device nor a file"
  fi
}

# The root filesystem, as e2fsprogs opens a filesystem at an offset inside a whole disk
# (no loop device and no mount needed).
root_fs() {
  echo "$1?offset=$PART_OFFSET"
}

fs_label() {
  echo "${OSP_FS_LABEL:-herd-root}"
}
