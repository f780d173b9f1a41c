#!/usr/bin/env bash
# Train the four networks at once on one CUDA GPU within a time budget, each twice:
#   holdout_<model>  train on CamVid train+val without sequence 0006R0, validate on 0006R0
#                    (the recipe's figure on a sequence the weights never saw);
#   all_<model>      the same recipe on every train+val frame, last epoch kept (to ship).
# Each run fits its schedule to the budget (--fit-epochs, capped at the papers' 1500 epochs),
# so all end inside one call; a run folder found in RUNS_DIR is resumed instead. Each
# network's two run folders are packed into PACK_DIR/<model>.tgz (no best.pt: under 16 MB).
#
#   tools/train_on_gpu.sh DATA_ROOT RUNS_DIR PACK_DIR BUDGET_SECONDS [EXTRA TRAIN OPTIONS]
set -uo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 DATA_ROOT RUNS_DIR PACK_DIR BUDGET_SECONDS [options...]" >&2
    exit 2
fi
data_root=$1 runs=$2 pack=$3 budget=$4
shift 4
extra=("$@")
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
mkdir -p "$runs" "$pack"

# name model options: one recipe per network, from the papers (MiniNet-v2: Adam 1e-3, poly,
# median-frequency weights ** 0.12; ENet: Adam 5e-4, 1 / ln(1.02 + p) weights).
common="--split train+val --epochs 1500 --batch-size 8 --crop 480x360 --amp bf16 \
--channels-last --no-progress"
recipes=(
    "mininet_v2_cpu mininet_v2_cpu"
    "mininet_v2 mininet_v2"
    "enet enet --lr 5e-4 --class-weights enet"
    "rds_net rds_net"
)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$python -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
pids=()
for recipe in "${recipes[@]}"; do
    read -r tag model options <<< "$recipe"
    for kind in holdout all; do
        name=${kind}_$tag
        run=$runs/$name
        mkdir -p "$run"
        if [ -f "$run/last.pt" ]; then
            cmd=($python -m semseg_ros.commands.train --resume "$run" --time-budget "$budget"
                 --no-progress)
        else
            split_opts=(--holdout 0006R0 --val-every 50)
            [ "$kind" = all ] && split_opts=(--val-split none)
            cmd=($python -m semseg_ros.commands.train --model "$model" --data-root "$data_root"
                 $common $options "${split_opts[@]}" --time-budget "$budget" --fit-epochs
                 --out "$run" "${extra[@]}")
        fi
        echo "=== $name: ${cmd[*]}"
        "${cmd[@]}" >> "$run/stdout.log" 2>&1 &
        pids+=($!)
    done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for run in "$runs"/*/; do
    echo "=== $(basename "$run")"
    grep -E 'epochs|error|Error|stopped' "$run/stdout.log" | head -3
    tail -n 2 "$run/stdout.log"
done
for recipe in "${recipes[@]}"; do
    read -r tag _ <<< "$recipe"
    tar czf "$pack/$tag.tgz" --exclude best.pt -C "$runs" "holdout_$tag" "all_$tag"
done
ls -l "$pack"
exit $status
