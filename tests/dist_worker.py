"""Subprocess entry for the tf.distribute tests: ``python dist_worker.py MODE WORKDIR DATA_DIR [TF_CONFIG]``.

MODE ``mirrored``: 2 logical CPU devices, MirroredStrategy. MODE ``multi_worker``: TF_CONFIG from argv.
Prints one JSON line: replicas, per-step losses and the final metrics.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
mode, workdir, data_dir = sys.argv[1:4]
if mode == "multi_worker":
    os.environ["TF_CONFIG"] = sys.argv[4]

import tensorflow as tf  # noqa: E402

if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import REPO_ROOT  # noqa: E402
from tfdepth.config import load_config  # noqa: E402
from tfdepth.training.loop import Trainer  # noqa: E402

cfg = load_config(str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"), [
    "data.dataset=tfrecord", f"data.data_dir={data_dir}", "data.input_size=[32, 32]", "model.encoder=resnet18",
    "train.batch_size=4", "train.steps_per_epoch=2", "train.phases.0.epochs=2", "train.log_every_steps=1",
    f"train.strategy={mode}", "eval.batch_size=4", "train.validate_every_epochs=0"])
trainer = Trainer(cfg, workdir)
metrics = trainer.run()
losses = [r["loss"] for r in trainer.history.data["steps"]]
print(json.dumps({"replicas": trainer.strategy.num_replicas_in_sync, "chief": trainer.is_chief,
                  "losses": losses, "metrics": metrics, "global_step": int(trainer.global_step.numpy())}))
