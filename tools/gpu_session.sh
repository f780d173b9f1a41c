#!/usr/bin/env bash
# One call on a lent CUDA GPU: run the CUDA tests, benchmark the inference path, time the
# graphed training step against the eager one, then train one network's recipes on
# held-out sequence 0006R0 and on all frames, resuming any run folder found in RUNS_DIR, all
# before DEADLINE seconds.
#
#   [MODEL=mininet_v2_cpu REF_EPOCHS=150 PAPER_EPOCHS=1500 RECIPE="options"] \
#       tools/gpu_session.sh DATA_ROOT RUNS_DIR OUT_DIR DEADLINE_SECONDS
#
# Runs (each resumable with `semseg train --resume RUNS_DIR/<run>`):
#   holdout_ref    the shipped weights' recipe (REF_EPOCHS, 384x288 crops), validated on 0006R0
#   holdout_paper  the paper's schedule (PAPER_EPOCHS, 480x360 crops), likewise
#   all_paper      the paper's schedule on every train+val frame (what would ship), started only
#                  once holdout_paper has finished
# CHECKS=0 leaves out the CUDA tests and the inference benchmark.
# RECIPE adds options to every run of the network (e.g. "--lr 5e-4 --class-weights enet").
# OUT_DIR receives bench_*.json, smoke.txt, session.log and one <run>.tgz per run folder
# (without best.pt; each under 16 MB).
set -uo pipefail
if [ $# -ne 4 ]; then
    echo "usage: $0 DATA_ROOT RUNS_DIR OUT_DIR DEADLINE_SECONDS" >&2
    exit 2
fi
data=$1 runs=$2 out=$3 deadline=$4
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
mkdir -p "$runs" "$out"
exec > >(tee -a "$out/session.log") 2>&1
left() { echo $((deadline - SECONDS)); }

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader
$python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

if [ "${CHECKS:-1}" = 1 ]; then  # CHECKS=0: training only
echo "=== CUDA tests: graphed inference and training step ($(left) s left)"
timeout 150 $python -m pytest -q -p no:cacheprovider test/test_cuda.py 2>&1 | tail -n 25

echo "=== inference: semseg bench --backend torch --device cuda [--fp16] ($(left) s left)"
for precision in fp32 fp16; do
    flag=(); [ $precision = fp16 ] && flag=(--fp16)
    timeout 120 $python -m semseg_ros.commands.bench --model all --backend torch \
        --device cuda "${flag[@]}" --runs 200 --warmup 20 --json "$out/bench_$precision.json"
done
fi

model=${MODEL:-mininet_v2_cpu}
ref_epochs=${REF_EPOCHS:-150}
paper_epochs=${PAPER_EPOCHS:-1500}
read -r -a recipe <<< "${RECIPE:-}"
common=(--model "$model" --data-root "$data" --batch-size 8 --amp bf16 --channels-last
        --no-progress "${recipe[@]}")
echo "=== training step: eager against --cuda-graph, 8 epochs each ($(left) s left)"
graph=()
for mode in eager graph; do
    flag=(); [ $mode = graph ] && flag=(--cuda-graph)
    rm -rf "/tmp/smoke_$mode"
    timeout 150 $python -m semseg_ros.commands.train "${common[@]}" --split train+val \
        --val-split none --epochs 8 --crop 480x360 --out "/tmp/smoke_$mode" "${flag[@]}" \
        > "/tmp/smoke_$mode.log" 2>&1
    status=$?
    tail -n 4 "/tmp/smoke_$mode.log"
    pace=$($python -c 'import json,sys,statistics
rows=[json.loads(l) for l in open(sys.argv[1])]
print(round(statistics.median(r["seconds"] for r in rows[2:]), 3))' \
        "/tmp/smoke_$mode/log.jsonl" 2>/dev/null || echo failed)
    echo "$mode: exit $status, median epoch ${pace} s, last loss $(tail -n 1 \
        "/tmp/smoke_$mode/log.jsonl" 2>/dev/null | cut -c1-60)" | tee -a "$out/smoke.txt"
    if [ $mode = graph ] && [ $status = 0 ] && grep -q 'captured as a CUDA graph' \
            "/tmp/smoke_$mode.log"; then
        graph=(--cuda-graph)
    fi
done
echo "long runs use: ${graph[*]:-eager steps}" | tee -a "$out/smoke.txt"

pids=()
train() {  # NAME BUDGET OPTIONS...: start or resume a run in the background, pid in pids
    local name=$1 budget=$2
    shift 2
    if [ -f "$runs/$name/last.pt" ]; then
        $python -m semseg_ros.commands.train --resume "$runs/$name" --time-budget "$budget" \
            --no-progress "${graph[@]}" >> "$runs/$name.log" 2>&1 &
    else
        $python -m semseg_ros.commands.train "${common[@]}" "$@" --time-budget "$budget" \
            --out "$runs/$name" "${graph[@]}" >> "$runs/$name.log" 2>&1 &
    fi
    pids+=($!)
}
finished() { grep -q '"epoch": '"$2"',' "$runs/$1/log.jsonl" 2>/dev/null; }

margin=40  # start-up, the last epoch's overrun, packing
echo "=== long runs ($(left) s left)"
holdout=(--split train+val --holdout 0006R0)
finished holdout_ref "$ref_epochs" || train holdout_ref $(($(left) - margin)) \
    "${holdout[@]}" --epochs "$ref_epochs" --crop 384x288 --val-every 25

if ! finished holdout_paper "$paper_epochs"; then
    train holdout_paper $(($(left) - margin)) "${holdout[@]}" --epochs "$paper_epochs" \
        --crop 480x360 --val-every 100
    wait "${pids[-1]}"
fi
if finished holdout_paper "$paper_epochs" && [ "$(left)" -gt 120 ]; then
    train all_paper $(($(left) - margin)) --split train+val --val-split none \
        --epochs "$paper_epochs" --crop 480x360
fi
# Not a bare `wait`: it would also wait for the tee that logs this script.
for pid in "${pids[@]}"; do wait "$pid"; done
for name in holdout_ref holdout_paper all_paper; do
    [ -d "$runs/$name" ] || continue
    echo "=== $name: $(tail -n 1 "$runs/$name.log")"
    cp "$runs/$name.log" "$runs/$name/session.log"
    tar czf "$out/$name.tgz" --exclude best.pt -C "$runs" "$name"
done
ls -l "$out"
echo "done with $(left) s left"
