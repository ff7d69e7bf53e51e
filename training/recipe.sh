#!/usr/bin/env bash
# The exact commands that produced the shipped models in models/ (see models/MODEL_CARD.md).
# CPU only, about 2.5 hours on 2 cores. Every step can be re-run on its own; the detector
# training resumes with `gesture-train train-detector --resume runs/detector/yolo26n_320/weights/last.pt`.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
DATA="${DATA:-../shared/data}"
RUNS="${RUNS:-runs}"
step() { echo; echo "== $*"; }

step "1. hand-box datasets -> one YOLO dataset (SubhiH: VOC; val carved out of train by session)"
[ -f "$RUNS/datasets/subhih_hands/data.yaml" ] || \
  gesture-train convert --source "voc:$DATA/subhih_hands:subhih" --out "$RUNS/datasets/subhih_hands"

step "2. train the hand detector (YOLO26n, 320 px, from scratch: no pretrained weights here)"
[ -f "$RUNS/detector/yolo26n_320/weights/best.pt" ] || \
  gesture-train train-detector --data "$RUNS/datasets/subhih_hands/data.yaml" --model yolo26n.yaml \
    --imgsz 320 --epochs 60 --hours 1.45 --project "$RUNS/detector" --name yolo26n_320

step "3. export it: verified ONNX + spec JSON"
gesture-train export-detector "$RUNS/detector/yolo26n_320/weights/best.pt" --out models --imgsz 320

step "4. cache its boxes on the gesture photos"
gesture-train detect "$DATA/hagrid_crops" --models-dir models --out "$RUNS/cache/hagrid.json"
gesture-train detect "$DATA/subhih_hands" --models-dir models --out "$RUNS/cache/subhih.json"

step "5. cut training crops (topmost hand, expanded: the serving code)"
rm -rf "$RUNS/crops/hagrid_mcs2021" "$RUNS/crops/subhih_fingers"
gesture-train crops "$DATA/hagrid_crops" --cache "$RUNS/cache/hagrid.json" \
  --out "$RUNS/crops/hagrid_mcs2021" --label-map mcs2021 --source hagrid --no-hand whole
gesture-train crops "$DATA/subhih_hands" --layout voc --cache "$RUNS/cache/subhih.json" \
  --out "$RUNS/crops/subhih_fingers" --label-map finger_count --source subhih

step "6. train the classifiers (tf_efficientnet_lite0 from ImageNet weights), export verified ONNX"
gesture-train train-classifier --crops "$RUNS/crops/hagrid_mcs2021" --label-map mcs2021 \
  --run-dir "$RUNS/classifier/mcs2021" --out models --input-size 224 --epochs 20 --patience 6
gesture-train train-classifier --crops "$RUNS/crops/subhih_fingers" --label-map finger_count \
  --run-dir "$RUNS/classifier/finger_count" --out models/finger_count --input-size 160 \
  --epochs 12 --patience 4

step "7. evaluate on held-out data -> reports/"
gesture-train evaluate --models-dir models --detector-data "$RUNS/datasets/subhih_hands/data.yaml" \
  --checkpoint "$RUNS/detector/yolo26n_320/weights/best.pt" \
  --title "Hand detector (SubhiH test split)" --out reports/detector
gesture-train evaluate --models-dir models --crops "$RUNS/crops/hagrid_mcs2021" \
  --hagrid "$DATA/hagrid_crops" --title "MachinesCanSee classifier (HaGRID held-out)" \
  --out reports/mcs2021
gesture-train evaluate --models-dir models --classifier-dir models/finger_count \
  --crops "$RUNS/crops/subhih_fingers" --fingers "$DATA/subhih_hands" \
  --title "Finger-count classifier (SubhiH test split)" --out reports/finger_count
