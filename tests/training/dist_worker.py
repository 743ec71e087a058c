"""Subprocess entry for the tf.distribute tests: ``python dist_worker.py MODE WORKDIR DATA_DIR [TF_CONFIG]``.

MODE ``mirrored``: 2 logical CPU devices, MirroredStrategy. MODE ``multi_worker``: TF_CONFIG from argv.
Prints one JSON line: replicas, per-step losses and the final metrics. MODE ``mirrored_resume``
(run beside ``mirrored``, same config, its own WORKDIR): a run interrupted after step 3 (mid-epoch)
and resumed by a new Trainer; prints the resumed run's position and per-step losses instead.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
mode, workdir, data_dir = sys.argv[1:4]
if mode == "multi_worker":
    os.environ["TF_CONFIG"] = sys.argv[4]

import tensorflow as tf  # noqa: E402

if mode in ("mirrored", "mirrored_resume"):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/: helpers
from helpers import REPO_ROOT  # noqa: E402
from tfdepth.config import load_config  # noqa: E402
from tfdepth.training.hooks import Hook  # noqa: E402
from tfdepth.training.loop import Trainer  # noqa: E402

cfg = load_config(str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"), [
    "data.dataset=tfrecord", f"data.data_dir={data_dir}", "data.input_size=[32, 32]", "model.encoder=resnet18",
    "train.batch_size=4", "train.steps_per_epoch=2", "train.phases.0.epochs=2", "train.log_every_steps=1",
    f"train.strategy={mode.replace('_resume', '')}", "eval.batch_size=4", "train.validate_every_epochs=0",
    "train.checkpoint_every_steps=1", "train.deterministic=true", "data.deterministic=true"])
if mode != "mirrored_resume":
    trainer = Trainer(cfg, workdir)
    metrics = trainer.run()
    losses = [r["loss"] for r in trainer.history.data["steps"]]
    result = {"replicas": trainer.train_step.strategy.num_replicas_in_sync, "chief": trainer.is_chief,
              "losses": losses, "metrics": metrics, "global_step": int(trainer.train_step.global_step.numpy())}
else:
    # Interrupted after global step 3 (mid-way through the second epoch), then resumed by a new Trainer.
    class Interrupted(Exception):
        pass

    class StopAfterStep3(Hook):
        """Runs after the checkpoint hook: global step 3 is saved (mid-epoch), step 4 never runs."""

        def on_step_end(self, step):
            if step.global_step == 3:
                raise Interrupted

    interrupted = Trainer(cfg, workdir, hooks=[StopAfterStep3()])
    try:
        interrupted.run()
    except Interrupted:
        pass
    resumed = Trainer(cfg, workdir)
    resumed.run()
    result = {"replicas": resumed.train_step.strategy.num_replicas_in_sync,
              "global_step": int(resumed.train_step.global_step.numpy())}
    result["resumed_position"] = [int(v) for v in tf.train.load_checkpoint(
        os.path.join(workdir, "checkpoints", "ckpt-3")).get_tensor("position/.ATTRIBUTES/VARIABLE_VALUE")]
    result["resumed_losses"] = [r["loss"] for r in resumed.history.data["steps"]]
print(json.dumps(result))
