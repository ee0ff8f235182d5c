#!/usr/bin/env bash
# One command for a CUDA machine: GPU inference, training, eval, predict (and 2-GPU DDP) in < 8 minutes,
# reported as OUT/gpu_report.json + OUT/gpu_report.md (tools/gpu_report.py).
#
#   tools/gpu_check.sh [--out DIR] [--budget SECONDS] [--dry-run | --cpu-smoke] [--no-compile]
#
# --cpu-smoke runs the same plan on the CPU at toy sizes (64 px, 2 iterations, one model and one peer,
# gloo instead of NCCL), so every command line, file and report section is proven before a GPU is lent.
# --no-compile leaves out the torch.compile steps (about a minute of compilation each on a GPU).
#
# Order = priority: eager inference of all models (batch 1, bf16 batch 16), train/eval/predict/DDP, then
# torch.compile of four models (reduce-overhead = CUDA graphs, and default mode), fp32 batch 16 and the rest
# while the time budget lasts; a step that would start
# after the budget is recorded as skipped, and every step is killed at the budget's end. A failed step is
# recorded and the run goes on; the exit status is 1 if any step failed. Without a GPU it stops at once.
set -uo pipefail

REFINE=${REFINE:-.venv/bin/refine}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=gpu_check_out
BUDGET=450 # seconds for all steps; the report and start-up fit in the remaining time of 8 minutes
DRY=0
SMOKE=0
COMPILE=1

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
    case "$1" in
    --out) [[ $# -ge 2 ]] || { echo "error: --out needs a folder" >&2; exit 2; }; OUT=$2; shift 2 ;;
    --budget)
        [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || { echo "error: --budget needs whole seconds" >&2; exit 2; }
        BUDGET=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --cpu-smoke) SMOKE=1; shift ;;
    --no-compile) COMPILE=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument $1 (see $0 --help)" >&2; exit 2 ;;
    esac
done

MODELS=(lw-refinenet-50 lw-refinenet-101 lw-refinenet-152 lw-refinenet-mobilenetv2 refinenet-50 refinenet-101 refinenet-152)
PEERS=(tv:deeplabv3_resnet50 tv:deeplabv3_mobilenet_v3_large tv:lraspp_mobilenet_v3_large tv:fcn_resnet50)
COMPILED=(lw-refinenet-mobilenetv2 lw-refinenet-50 refinenet-101 lw-refinenet-152) # compile takes ~1 min each
DEVICE=cuda SIZE=512 WARMUP=10 ITERS=50 TRAIN_MODEL=lw-refinenet-50 CROP=384 SHAPES=(--n 200 --size 384)
TRAIN_ITERS=60 DDP_ITERS=30 LOADER_WORKERS=8 BIG_BATCH=16
if ((SMOKE)); then
    DEVICE=cpu SIZE=64 WARMUP=1 ITERS=2 TRAIN_MODEL=lw-refinenet-mobilenetv2 CROP=64 SHAPES=(--n 12 --size 64)
    TRAIN_ITERS=2 DDP_ITERS=2 LOADER_WORKERS=0 BIG_BATCH=4
    MODELS=(lw-refinenet-mobilenetv2) PEERS=(tv:lraspp_mobilenet_v3_large) COMPILED=(lw-refinenet-mobilenetv2)
fi
BENCH=(bench --size "$SIZE" --device "$DEVICE" --warmup "$WARMUP" --iters "$ITERS")
DATA="$OUT/data"
RUN="$OUT/runs/train"
TRAIN=(train --model "$TRAIN_MODEL" --no-pretrained-backbone --data "$DATA/shapes" --batch "$BIG_BATCH" --crop "$CROP"
    --workers "$LOADER_WORKERS" --amp bf16 --device "$DEVICE" --iters "$TRAIN_ITERS" --val-every "$TRAIN_ITERS")

model_args() { local name; for name in "$@"; do printf -- '-m\n%s\n' "$name"; done; }
mapfile -t ALL_ARGS < <(model_args "${MODELS[@]}" "${PEERS[@]}")
mapfile -t COMPILED_ARGS < <(model_args "${COMPILED[@]}")

plan() { # name, then the command
    local name=$1
    shift
    if ((DRY)); then
        printf '%-28s %s\n' "$name" "$*"
        return 0
    fi
    local left=$((DEADLINE - $(date +%s)))
    if ((left < 20)); then
        printf '%s\t0\t0\tskipped: time budget spent\n' "$name" >>"$OUT/steps.tsv"
        echo "== $name: skipped (time budget spent)"
        return 0
    fi
    echo "== $name ($left s left)"
    local begin=$(date +%s) rc note=""
    timeout --kill-after 10 "$left" "$@" >"$OUT/logs/$name.log" 2>&1
    rc=$?
    ((rc == 124 || rc == 137)) && note="killed at the time budget"
    ((rc != 0)) && [[ -z $note ]] && note=$(tail -n 1 "$OUT/logs/$name.log" | tr '\t' ' ' | cut -c1-160)
    printf '%s\t%d\t%d\t%s\n' "$name" "$rc" "$(($(date +%s) - begin))" "$note" >>"$OUT/steps.tsv"
    ((rc == 0)) || echo "   FAILED (exit $rc): see $OUT/logs/$name.log"
    return 0
}

if ((SMOKE && !DRY)); then
    mkdir -p "$OUT/bench" "$OUT/logs" || exit 2
    : >"$OUT/steps.tsv"
    DEADLINE=$(($(date +%s) + BUDGET))
    GPUS=2 # two CPU processes stand in for two GPUs (gloo)
    echo "CPU smoke run: the GPU plan at toy sizes; results in $OUT"
elif ((!DRY)); then
    if ! "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        echo "error: no CUDA GPU visible to $PYTHON (torch.cuda.is_available() is False); this check needs one" \
            "(tools/gpu_check.sh --dry-run prints the plan)" >&2
        exit 2
    fi
    mkdir -p "$OUT/bench" "$OUT/logs" || exit 2
    : >"$OUT/steps.tsv"
    DEADLINE=$(($(date +%s) + BUDGET))
    GPUS=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')
    nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
else
    GPUS=2 # the plan shows the DDP step too
    echo "plan (dry run, nothing is executed); results would go to $OUT"
fi

eager() { # precision batch
    plan "bench-eager-$1-b$2" "$REFINE" "${BENCH[@]}" "${ALL_ARGS[@]}" --precision "$1" --batch "$2" \
        --json "$OUT/bench/eager-$1-b$2.json"
}
compiled() { # mode precision batch
    ((COMPILE)) || return 0
    plan "bench-compile-$1-$2-b$3" "$REFINE" "${BENCH[@]}" "${COMPILED_ARGS[@]}" --precision "$2" --batch "$3" \
        --compile --compile-mode "$1" --json "$OUT/bench/compile-$1-$2-b$3.json"
}

eager fp32 1
eager bf16 1
eager bf16 "$BIG_BATCH"
plan prepare-shapes "$REFINE" prepare shapes --root "$DATA" "${SHAPES[@]}"
plan train-amp "$REFINE" "${TRAIN[@]}" --out "$RUN" --json "$OUT/train.json"
plan eval "$REFINE" eval --checkpoint "$RUN/last.pt" --data "$DATA/shapes" --split val --batch "$BIG_BATCH" \
    --device "$DEVICE" --json "$OUT/eval.json"
plan eval-bf16 "$REFINE" eval --checkpoint "$RUN/last.pt" --data "$DATA/shapes" --split val --batch "$BIG_BATCH" \
    --device "$DEVICE" --precision bf16 --json "$OUT/eval_bf16.json"
plan predict "$REFINE" predict --checkpoint "$RUN/last.pt" --out "$OUT/predictions" --batch 8 --device "$DEVICE" \
    --json "$OUT/predict.json" "$DATA/shapes/images"
if ((GPUS >= 2)); then
    plan ddp-2gpu "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node 2 -m refine_cli "${TRAIN[@]}" \
        --iters "$DDP_ITERS" --val-every "$DDP_ITERS" --out "$OUT/runs/ddp" --json "$OUT/ddp.json"
else
    ((DRY)) || printf 'ddp-2gpu\t0\t0\tskipped: %s GPU(s), needs 2\n' "$GPUS" >>"$OUT/steps.tsv"
fi
compiled reduce-overhead bf16 1
compiled default bf16 1
eager fp32 "$BIG_BATCH"
compiled reduce-overhead bf16 "$BIG_BATCH"
compiled default bf16 "$BIG_BATCH"
compiled default fp32 1

if ((DRY)); then
    printf '%-28s %s\n' report "$PYTHON tools/gpu_report.py $OUT"
    exit 0
fi
"$PYTHON" tools/gpu_report.py "$OUT" || exit 2
if cut -f2 "$OUT/steps.tsv" | grep -qv '^0$'; then
    echo "some steps failed: see $OUT/gpu_report.md" >&2
    exit 1
fi
