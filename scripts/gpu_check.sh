#!/usr/bin/env bash
# The GPU check: every CUDA path of reid and the real-image table in one call, everything under $OUT.
#
#   bash scripts/gpu_check.sh              # on a GPU machine, from the repository root (about 9 minutes)
#   bash scripts/gpu_check.sh --dry-run    # every part on the CPU at tiny sizes (about 2 minutes)
#   bash scripts/gpu_check.sh --parts steps dist     # rerun some parts; --help lists them
#
# No install step: reid runs from the tree (PYTHONPATH=.). Run scripts/gpu_prepare.sh first on the
# machine the tree comes from (it copies the Market-1501 mini images, the MobileNetV2 weights and
# torchreid's source into .gpu/). Writes $OUT/summary.md, $OUT/logs/<part>.log, $OUT/parts/.
# $OUT defaults to ./gpu_check; $PYTHON to python3 (else python). The logic is scripts/gpu/check.py.
set -u
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OUT="${OUT:-$PWD/gpu_check}"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
exec "$PY" scripts/gpu/check.py --out "$OUT" "$@"
