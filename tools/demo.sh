#!/usr/bin/env bash
# The README's first command (`make demo`): the whole refine workflow offline on a CPU, in minutes.
# prepare (synthetic shapes) -> train (LW-RefineNet-MobileNetV2 from scratch) -> eval -> predict -> bench.
set -euo pipefail

REFINE=${REFINE:-.venv/bin/refine}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${DEMO_DIR:-demo_out}
DATA="$OUT/data"
RUN="$OUT/runs/shapes-lw-mbv2"
# No thread setting here: refine's default gives training one thread per CPU left after its data-loader
# workers (1 on 2 cores), and OpenMP threads wait passively when refine starts on a busy machine
# (docs/benchmarks.md, "CPU threads").

start=$(date +%s)
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/5 prepare: synthetic shapes dataset (6 classes, no download)"
"$REFINE" prepare shapes --root "$DATA"

step "2/5 train: lw-refinenet-mobilenetv2 from scratch (recipe demo-shapes)"
rm -rf "$RUN"  # a demo always starts from nothing; real runs continue with --resume
"$REFINE" train --recipe demo-shapes --data "$DATA/shapes" --out "$RUN"

step "3/5 eval: best checkpoint on the val split"
"$REFINE" eval --checkpoint "$RUN/best.pt" --data "$DATA/shapes" --split val --json "$OUT/eval.json" \
    --report "$OUT/report"

step "4/5 predict: label PNGs and overlays for a few val images"
mapfile -t ids < <(head -n 4 "$DATA/shapes/splits/val.txt")
inputs=()
for id in "${ids[@]}"; do inputs+=("$DATA/shapes/images/$id".*); done
rm -rf "$OUT/predictions"
"$REFINE" predict --checkpoint "$RUN/best.pt" --out "$OUT/predictions" --overlay "${inputs[@]}"

step "5/5 bench: CPU latency of the demo model and LW-RefineNet-50 at 256x256"
"$REFINE" bench --model lw-refinenet-mobilenetv2 --model lw-refinenet-50 --size 256 --channels-last --warmup 2 --iters 10 \
    --device cpu --json "$OUT/bench.json" --plot "$OUT/bench.png"

miou=$("$PYTHON" -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["miou"])' "$OUT/eval.json")
elapsed=$(( $(date +%s) - start ))
step "done in ${elapsed}s: val mIoU on shapes = $miou (target >= 0.6)"
cat <<SUMMARY
  dataset       $DATA/shapes            (unified format: meta.json, splits/, images/, labels/)
  run folder    $RUN    (config.yaml, best.pt, last.pt, metrics.jsonl, metrics.csv, curves.png)
  TensorBoard   tensorboard --logdir $OUT/runs
  eval report   $OUT/eval.json, $OUT/report/report.html (open in a browser)
  predictions   $OUT/predictions/       (<id>.png palette labels, <id>_overlay.jpg)
  benchmark     $OUT/bench.json, $OUT/bench.png
SUMMARY
"$PYTHON" -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["miou"] >= 0.6 else 1)' "$OUT/eval.json" \
    || { echo "demo: val mIoU below 0.6: training did not converge" >&2; exit 1; }
