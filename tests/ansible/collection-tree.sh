# Sourced by the run-*.sh collection checks: the collection as it ships, i.e. the tarball
# `ansible-galaxy collection build` makes (build_ignore decides its content), installed
# into a throw-away ansible_collections tree, since ansible-test and antsibull-docs only
# work from inside ansible_collections/<namespace>/<name>/. Sets $repo, $work and $dest.

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
ansible-galaxy collection build --output-path "$work" "$repo" >/dev/null
ansible-galaxy collection install --offline -p "$work/tree" "$work"/herd-cluster-*.tar.gz >/dev/null
dest="$work/tree/ansible_collections/herd/cluster"

# ansible-test bootstraps pip into each venv it makes with a get-pip script fetched from
# its own CI file host, which this network cannot reach. Stand in for it once: a script
# that runs pip from the pip wheel on PyPI and installs the same pinned pip.
stand_in_for_get_pip() {
pip_version="$(python3 -c 'import inspect, re
import ansible_test._internal.python_requirements as m
print(re.search(r"pip=.([0-9.]+).", inspect.getsource(m.get_venv_packages)).group(1))')"
cache="$HOME/.ansible/test/cache"
get_pip="$cache/get_pip_${pip_version//./_}.py"
if [ ! -f "$get_pip" ]; then
  mkdir -p "$cache"
  python3 -m pip download --quiet --no-deps --dest "$cache" "pip==$pip_version"
  wheel="$(ls "$cache"/pip-"$pip_version"-*.whl)"
  cat > "$get_pip" <<PY
import sys
sys.path.insert(0, "$wheel")
from pip._internal.cli.main import main
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", *args]))
PY
fi
}
