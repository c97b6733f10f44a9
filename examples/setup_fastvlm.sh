#!/usr/bin/env bash
# Set up the FastVLM models, under the name the older setup_fastvlm.sh had: a thin wrapper of
# setup_models.sh (verified, repaired if damaged, resumed if interrupted; safe to run again).
#
#   examples/setup_fastvlm.sh          # FastVLM 0.5B (the development and CI size)
#   examples/setup_fastvlm.sh 1.5b     # another size: 0.5b, 1.5b or 7b
#
# It selects by size, as setup_models.sh does: every registry model of that size (and the required
# ones, with no size given there) is set up, so `7b` also sets up the registry's other 7B models.
set -uo pipefail

size="${1:-0.5b}"
case $size in
  0.5b|1.5b|7b) ;;
  *) echo "FastVLM comes in 0.5b, 1.5b and 7b, not '$size'; see: modelctl list" >&2; exit 4 ;;
esac

exec bash "$(dirname "$0")/setup_models.sh" "$size"
