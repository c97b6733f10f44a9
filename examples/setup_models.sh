#!/usr/bin/env bash
# Set up the models this project needs, in the spirit of the seeds' setup_fastvlm.sh:
# verified, repaired if damaged, resumed if interrupted. Safe to run again and again.
#
#   examples/setup_models.sh            # every required model (and optional ones already here)
#   examples/setup_models.sh 0.5b       # only one size variant
#   CI_MINIMAL_MODELS=1 examples/setup_models.sh   # the CI registry (models.minimal.yaml)
set -uo pipefail

size="${1:-}"
args=()
[ -n "$size" ] && args=(--size "$size")

if ! command -v modelctl >/dev/null 2>&1; then
  echo "modelctl is not installed: pip install -e '.[dev]' (see README.md)" >&2
  exit 1
fi

# One path per model on stdout; errors, and on a terminal the progress bars, on stderr.
paths=$(modelctl ensure "${args[@]}" --quiet)
code=$?
case $code in
  0) ;;
  3) echo "some models are incomplete or damaged and could not be repaired (offline?); see: modelctl verify --all" >&2; exit 3 ;;
  4) echo "a model or size variant is not in the registry; see: modelctl list" >&2; exit 4 ;;
  5) echo "not enough disk space for the models; see: modelctl doctor" >&2; exit 5 ;;
  *) echo "model setup failed (exit $code); run it again to resume, or: modelctl doctor" >&2; exit "$code" ;;
esac

while IFS= read -r path; do
  [ -n "$path" ] && echo "model ready: $path"
done <<< "$paths"
