#!/usr/bin/env bash
# GPU check: the training-step benchmark in float32, XLA, mixed_float16 and mixed_bfloat16, inference
# (Keras + SavedModel), and a short mixed-precision training run of the main job, on whatever GPU is
# present. Writes one JSON report (default: $OUT/gpu_check.json, or ./gpu_check.json) and the bench JSON
# beside it. Nothing in CI depends on this; record its figures in docs/benchmarks.md.
#
#   pip install -e ".[gpu]"        # tensorflow[and-cuda]: TensorFlow's CUDA / cuDNN wheels
#   bash tools/gpu_check.sh [OUTPUT_DIR]
#
# Optional: EPOCHS (default 2) for the training run, BUDGET_S (default 420) for the bench.
set -euo pipefail

OUT_DIR="${1:-${OUT:-.}}"
EPOCHS="${EPOCHS:-2}"
BUDGET_S="${BUDGET_S:-420}"
PY="${PYTHON:-python}"
CONFIG=configs/synthetic_unet_resnet34.yaml
mkdir -p "$OUT_DIR"
RUN_DIR="$(mktemp -d)/gpu_run"

echo "== devices" >&2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || echo "nvidia-smi not found" >&2
"$PY" - <<'EOF' >&2
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print("TensorFlow", tf.__version__, "sees", len(gpus), "GPU(s):", [g.name for g in gpus])
if not gpus:
    raise SystemExit("error: TensorFlow sees no GPU (install with: pip install -e '.[gpu]'); nothing to check")
EOF

echo "== bench: train (float32, xla, mixed_float16, mixed_bfloat16) + infer" >&2
"$PY" -m tfdepth.bench --config "$CONFIG" --what train,infer --train-variants xla,mixed_float16,mixed_bfloat16 \
    --tflite none --budget-s "$BUDGET_S" --output "$OUT_DIR/bench_gpu.json" \
    --set data.input_size=[256,256] --set train.batch_size=16

echo "== training: $EPOCHS epochs, mixed_float16, XLA" >&2
start=$(date +%s)
"$PY" -m tfdepth.train --config "$CONFIG" --workdir "$RUN_DIR" \
    --set train.mixed_precision=mixed_float16 --set train.jit_compile=true \
    --set train.phases.0.epochs="$EPOCHS" --set train.validate_every_epochs=1
train_s=$(( $(date +%s) - start ))

"$PY" - "$OUT_DIR" "$RUN_DIR" "$train_s" "$EPOCHS" <<'EOF'
import json, os, subprocess, sys
out_dir, run_dir, train_s, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
bench = json.load(open(os.path.join(out_dir, "bench_gpu.json")))
metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True, check=True).stdout.strip()
except (OSError, subprocess.CalledProcessError):
    smi = None
train = bench.get("train", {})
report = {
    "gpu": smi,
    "machine": bench.get("machine"),
    "bench_file": os.path.abspath(os.path.join(out_dir, "bench_gpu.json")),
    "train_images_per_s": {k: (v.get("images_per_s", {}).get("median") if "images_per_s" in v else v)
                           for k, v in train.get("variants", {}).items()},
    "infer": {k: v.get("latency_ms", v) for k, v in bench.get("infer", {}).get("variants", {}).items()},
    "training_run": {"config": "configs/synthetic_unet_resnet34.yaml", "epochs": epochs,
                     "mixed_precision": "mixed_float16", "jit_compile": True, "wall_s": train_s,
                     "metrics": metrics},
}
path = os.path.join(out_dir, "gpu_check.json")
with open(path, "w") as f:
    json.dump(report, f, indent=2)
print(json.dumps({k: report[k] for k in ("gpu", "train_images_per_s", "training_run")}, indent=2))
print("wrote", path)
EOF
