#!/usr/bin/env bash
# Install what Herd's engine, lab and tests need on a Debian 12 machine (run as root).
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(
  openssh-server openssh-client iproute2 procps socat zstd lz4 lzop  # lab nodes, transfers
  iptables                                                            # fault injection (cut links)
  e2fsprogs fdisk util-linux ganeti-os-noop                           # OS API (herd-image, noop)
  drbd-utils lvm2                                                     # DRBD/LVM backends
  qemu-system-x86 qemu-utils busybox-static debootstrap               # kvm guests, VM nodes
  ganeti-htools zerofree                                              # hail; fake zeroing
  python3-ganeti-rapi python3-pycurl python3-simplejson             # Ganeti's RAPI client (tests)
)
missing=()
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -r requirements-dev.txt -e ./engine
