#!/usr/bin/env bash
# Train the four shipped networks one after another, resuming whatever is unfinished.
#
#   OMP_WAIT_POLICY=PASSIVE nohup nice -n 5 training_state/train_queue.sh DATA_ROOT RUNS_DIR \
#       >> RUNS_DIR/queue.log 2>&1 &
#
# Each entry is a run RUNS_DIR/<run> of one network; a run missing there is first copied from
# training_state/<run> (the checkpoint committed by an earlier session), else started fresh,
# unless it is listed in training_state/finished.txt (shipped; its checkpoint deleted).
# A finished run returns at once, so the script can be started again any time: it continues
# with the first unfinished run. One job at a time keeps the machine usable.
# Ship a run's best weights with: python -m semseg_ros.training.ship RUNS_DIR/<run> ...
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 DATA_ROOT RUNS_DIR" >&2
    exit 2
fi
data_root=$1
runs=$2
repo=$(cd "$(dirname "$0")/.." && pwd)
semseg="$repo/.venv/bin/semseg"
mkdir -p "$runs"

# run model epochs [options]: CPU time is scarce, so the three networks after the CPU default
# get 100 epochs (about 1.5-4 h each on 2 cores) instead of 150. Options are the fastest
# measured for each network on this CPU (semseg_ros/training/train.py's docstring): ENet
# trains 1.4x faster channels-last and compiled, the others are fastest eager. ENet is
# trained with its own paper's class weighting, 1/ln(1.02 + p); the others with MiniNet's.
# enet_long continues the shipped ENet (underfit after 100 epochs: README) with the
# reference PyTorch ENet's recipe: lr 5e-4, whole 480x360 frames, no scale augmentation.
queue=(
    "mininet_v2_cpu mininet_v2_cpu 150"
    "enet enet 100 --channels-last --compile --class-weights enet"
    "rds_net rds_net 100"
    "mininet_v2 mininet_v2 100"
    "enet_long enet 100 --channels-last --compile --class-weights enet --init shipped
        --lr 5e-4 --crop 480x360 --scale-range 1 1"
)

for entry in "${queue[@]}"; do
    read -r name model epochs options <<< "$(echo $entry)"
    run="$runs/$name"
    # A run whose weights ship is listed in training_state/finished.txt; its checkpoint is gone.
    if grep -qx "$name" "$repo/training_state/finished.txt" 2>/dev/null; then
        echo "=== $name: trained and shipped (training_state/finished.txt), skipped"
        continue
    fi
    if [ ! -f "$run/last.pt" ] && [ -f "$repo/training_state/$name/last.pt" ]; then
        mkdir -p "$run"
        cp -n "$repo/training_state/$name/"* "$run/"
    fi
    echo "=== $(date -u +%FT%TZ) $name: $model ($epochs epochs) in $run"
    if [ -f "$run/last.pt" ]; then
        "$semseg" train --resume "$run" --no-progress  # run.json keeps its options
    else
        "$semseg" train --model "$model" --dataset camvid --data-root "$data_root" \
            --epochs "$epochs" --batch-size 8 --crop 384x288 --threads 2 --val-every 5 \
            --no-progress $options --out "$run"
    fi
done
echo "=== $(date -u +%FT%TZ) queue finished"
