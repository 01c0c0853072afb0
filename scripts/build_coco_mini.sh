#!/usr/bin/env bash
# Build the coco_mini dataset (159 real MS-COCO photos) from the raw shared files, without committing data.
#
#   scripts/build_coco_mini.sh [OUT_DIR] [extra `cmh extract coco-mini` options]
#
# Reads $CMH_DATA/coco_mini (default ../shared/data/coco_mini relative to the repository) and writes to OUT_DIR
# (default runs/coco_mini, which git ignores):
#   coco_mini.npz              native dataset: name, image (159, 1280) float32, text (159, V) float32,
#                              labels (159, 80) uint8, train/query/database int64 (query 30, seed 0)
#   cmh.yaml                   YAML spec over the same arrays (+ class names, image paths)
#   coco_mini.image.npz        EfficientNet-Lite0 features + relative paths (cmh extract image format)
#   coco_mini.text.npz(.vocab.txt)  caption bag of words (CSR) + vocabulary
#   coco_mini.json             how it was built
# Then:  cmh run cvh --dataset coco_mini --data runs/coco_mini --bits 16,32
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-runs/coco_mini}"
shift || true
data="${CMH_DATA:-$here/../shared/data}/coco_mini"
mkdir -p "$out"
python -m cmh extract coco-mini --data "$data" --out "$out/coco_mini.npz" "$@"
