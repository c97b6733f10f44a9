# Sourced by bench scripts: make (once) and activate the project's venv at .venv-bench,
# installed the way README.md says, so a fresh machine needs nothing installed by hand.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${MODELCTL_BENCH_VENV:-$here/.venv-bench}"
if [ ! -x "$venv/bin/modelctl" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -e "$here[dev]"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
