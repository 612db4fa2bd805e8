#!/usr/bin/env bash
# Reproduces the bundled model l2l-twolabel, its sample image and its evaluation (2-core CPU: ~20 min).
# Usage: bash recipes/l2l-twolabel.sh [WORKDIR]
set -euo pipefail
work=${1:-recipe-l2l-twolabel}
mkdir -p "$work"
napari-nanoscopy simulate twolabel --n 600 --size 64 --seed 0 --out "$work/train"
napari-nanoscopy simulate twolabel --n 64 --size 64 --seed 1 --out "$work/test"
napari-nanoscopy simulate twolabel --n 1 --size 128 --seed 7 --out "$work/sample"
napari-nanoscopy train l2l --data "$work/train" --out "$work/l2l-twolabel" --steps 1500 --patch 64 --batch 16 --seed 0 --device cpu
python "$(dirname "$0")/evaluate_twolabel.py" "$work/l2l-twolabel" "$work/test"
