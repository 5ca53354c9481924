#!/usr/bin/env bash
# The demo: two lab clusters on this machine, built and checked through the real engine.
# Nodes are network namespaces with their own sshd; the masters run here, in the host
# namespace, and reach the nodes over SSH. `scripts/demo.sh down` removes everything.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
demo=${HERD_DEMO_DIR:-$root/.lab/demo}

down() {
  for c in alpha beta; do
    if [ -S "$demo/$c/master.sock" ]; then
      pkill -f -- "--state-dir $demo/$c/state" 2>/dev/null || true
    fi
    python3 lab/herdlab.py down --name "demo$c" >/dev/null 2>&1 || true
  done
  rm -rf "$demo"
}

if [ "${1:-}" = "down" ]; then
  down
  echo "demo removed"
  exit 0
fi

bash scripts/setup.sh
down
mkdir -p "$demo"

step() { printf '\n== %s\n' "$*"; }

lab_json() { python3 lab/herdlab.py status | python3 -c "
import json, sys
labs = {l['name']: l for l in json.load(sys.stdin)}
lab = labs[sys.argv[1]]
for n in lab['nodes']:
    print(n['name'], n['ip'], n['port'], lab['key_path'])
" "$1"; }

for cluster in alpha beta; do
  nodes=3; [ "$cluster" = beta ] && nodes=2
  step "lab for cluster $cluster: $nodes nodes (network namespaces with their own sshd)"
  python3 lab/herdlab.py up --name "demo$cluster" --nodes "$nodes" >/dev/null
  mapfile -t rows < <(lab_json "demo$cluster")
  export HERD_STATE_DIR="$demo/$cluster/state" HERD_SOCKET="$demo/$cluster/master.sock"
  read -r first ip port key <<<"${rows[0]}"
  export HERD_BOOTSTRAP_KEY="$key"
  step "herd cluster init $cluster (starts the master, creates CA and SSH key, adds $first)"
  herd cluster init "$cluster" --master-node "$first" --primary-ip "$ip" --ssh-port "$port" \
    --enabled-hypervisors fake,kvm --enabled-disk-templates file,plain,drbd
  for row in "${rows[@]:1}"; do
    read -r name ip port _ <<<"$row"
    step "herd node add $name"
    herd node add "$name" --primary-ip "$ip" --ssh-port "$port"
  done
  step "herd cluster verify ($cluster)"
  herd cluster verify
  herd node list
done

step "jobs run on cluster beta"
herd job list
echo
echo "Demo clusters are running: HERD_SOCKET=$demo/alpha/master.sock or $demo/beta/master.sock"
echo "Remove them with: sudo bash scripts/demo.sh down"
