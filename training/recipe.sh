#!/usr/bin/env bash
# The exact commands that produced the shipped models in models/ (see models/MODEL_CARD.md).
# CPU only, about 3.3 hours on 2 cores (plus the review of step 4). Every step can be re-run on its own; the detector
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

step "3. export it: verified ONNX + spec JSON (the first detector, SubhiH only)"
gesture-train export-detector "$RUNS/detector/yolo26n_320/weights/best.pt" --out "$RUNS/stage/det_first" --imgsz 320

step "4. pseudo-labels on the gesture photos (issue 2, step 7a), reviewed by eye"
# The HaGRID crop split fixes which photos are held out; the detector never trains on them.
gesture-train detect "$DATA/hagrid_crops" --models-dir "$RUNS/stage/det_first" --out "$RUNS/cache/hagrid_first.json"
rm -rf "$RUNS/crops/hagrid_split"
gesture-train crops "$DATA/hagrid_crops" --cache "$RUNS/cache/hagrid_first.json" \
  --out "$RUNS/crops/hagrid_split" --label-map mcs2021 --source hagrid --no-hand whole
gesture-train detect "$DATA/hagrid_crops" --models-dir "$RUNS/stage/det_first" --conf 0.05 \
  --out "$RUNS/cache/hagrid_low.json"
rm -rf "$RUNS/pseudo/hagrid"
gesture-train pseudo-labels export --cache "$RUNS/cache/hagrid_low.json" --conf 0.25 \
  --low-label unsure --dedupe-iou 0.4 --max-boxes 3 --out "$RUNS/pseudo/hagrid"
gesture-train pseudo-labels sheets --reviewed "$RUNS/pseudo/hagrid" \
  --exclude-crops "$RUNS/crops/hagrid_split" --out "$RUNS/pseudo/hagrid/sheets"
# The review: training/reviews/hagrid_pseudo_labels_review.csv (480 photos looked at on the
# sheets, 126 with a hand box accepted; see models/MODEL_CARD.md).
gesture-train pseudo-labels apply --reviewed "$RUNS/pseudo/hagrid" \
  --decisions training/reviews/hagrid_pseudo_labels_review.csv --out "$RUNS/pseudo/hagrid/voc_reviewed"
rm -rf "$RUNS/datasets/hagrid_pseudo"
gesture-train pseudo-labels dataset --reviewed "$RUNS/pseudo/hagrid" \
  --voc-dir "$RUNS/pseudo/hagrid/voc_reviewed" --exclude-crops "$RUNS/crops/hagrid_split" \
  --with-data "$RUNS/datasets/subhih_hands/data.yaml" --out "$RUNS/datasets/hagrid_pseudo"

step "5. fine-tune the detector on SubhiH + the reviewed HaGRID boxes, export it"
[ -f "$RUNS/detector/yolo26n_320_ft/weights/best.pt" ] || \
  gesture-train train-detector --data "$RUNS/datasets/hagrid_pseudo/combined.yaml" \
    --model "$RUNS/detector/yolo26n_320/weights/best.pt" --imgsz 320 --epochs 12 --patience 6 \
    --project "$RUNS/detector" --name yolo26n_320_ft
gesture-train export-detector "$RUNS/detector/yolo26n_320_ft/weights/best.pt" --out models --imgsz 320

step "6. cache its boxes on the gesture photos"
gesture-train detect "$DATA/hagrid_crops" --models-dir models --out "$RUNS/cache/hagrid.json"
gesture-train detect "$DATA/subhih_hands" --models-dir models --out "$RUNS/cache/subhih.json"

step "7. cut training crops (topmost hand, expanded: the serving code)"
rm -rf "$RUNS/crops/hagrid_mcs2021_ft" "$RUNS/crops/subhih_fingers"
gesture-train crops "$DATA/hagrid_crops" --cache "$RUNS/cache/hagrid.json" \
  --out "$RUNS/crops/hagrid_mcs2021_ft" --label-map mcs2021 --source hagrid --no-hand whole
gesture-train crops "$DATA/subhih_hands" --layout voc --cache "$RUNS/cache/subhih.json" \
  --out "$RUNS/crops/subhih_fingers" --label-map finger_count --source subhih

step "8. train the classifiers (tf_efficientnet_lite0 from ImageNet weights), export verified ONNX"
gesture-train train-classifier --crops "$RUNS/crops/hagrid_mcs2021_ft" --label-map mcs2021 \
  --run-dir "$RUNS/classifier/mcs2021_ft" --out models --input-size 224 --epochs 20 --patience 6
gesture-train train-classifier --crops "$RUNS/crops/subhih_fingers" --label-map finger_count \
  --run-dir "$RUNS/classifier/finger_count" --out models/finger_count --input-size 160 \
  --epochs 12 --patience 4

step "9. evaluate on held-out data -> reports/"
gesture-train evaluate --models-dir models --detector-data "$RUNS/datasets/subhih_hands/data.yaml" \
  --checkpoint "$RUNS/detector/yolo26n_320_ft/weights/best.pt" \
  --title "Hand detector (SubhiH test split)" --out reports/detector
gesture-train evaluate --models-dir models --crops "$RUNS/crops/hagrid_mcs2021_ft" \
  --hagrid "$DATA/hagrid_crops" --title "MachinesCanSee classifier (HaGRID held-out)" \
  --out reports/mcs2021
gesture-train evaluate --models-dir models --classifier-dir models/finger_count \
  --crops "$RUNS/crops/subhih_fingers" --fingers "$DATA/subhih_hands" \
  --title "Finger-count classifier (SubhiH test split)" --out reports/finger_count
