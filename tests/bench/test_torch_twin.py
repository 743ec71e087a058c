"""The PyTorch twin of ``bench --compare-torch`` computes what the Keras model computes.

The speed ratio is only meaningful if the twin is the same network: forward passes (inference and
training-mode batch statistics), the loss and the gradients of the two must agree.
"""

import json

import numpy as np
import pytest

from helpers import REPO_ROOT, write_tiny_dataset

torch = pytest.importorskip("torch", reason="the PyTorch twin needs torch (the ref / pth extra)")

H, W, B = 40, 56, 2  # not multiples of 32: exercises the U-Net's size matching
CONFIG = str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml")
TINY = ["model.encoder=resnet18", "model.decoder_args.filters=[32, 16, 16, 8, 8]"]


def _model_and_twin():
    import keras

    from tfdepth.bench.torch_twin import build_twin
    from tfdepth.config import load_config
    from tfdepth.models.build import build_model

    keras.utils.set_random_seed(1)
    cfg = load_config(CONFIG, TINY)
    model = build_model(cfg.model, [H, W], cfg.data.max_depth_m)
    rng = np.random.default_rng(0)
    for v in model.weights:  # non-trivial BN statistics so that a layout mistake shows
        name = v.path.rsplit("/", 1)[-1]
        if name in ("moving_variance", "gamma"):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
        elif name in ("moving_mean", "beta"):
            v.assign(rng.normal(0, 0.1, v.shape).astype("float32"))
    return model, build_twin(model)


def test_twin_forward_loss_and_gradients_match_keras():
    import tensorflow as tf

    from tfdepth.bench.torch_twin import edge_aware_loss, to_nchw
    from tfdepth.losses import edge_aware_loss as tf_edge_aware

    model, twin = _model_and_twin()
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (B, H, W, 3)).astype("float32")
    gt = rng.uniform(0.5, 9.0, (B, H, W, 1)).astype("float32")
    gt[:, :5, :7] = 0.0  # invalid pixels are masked in both

    # inference: moving statistics
    ref = model(x, training=False)["depth"].numpy()
    out = twin.eval()(to_nchw(x)).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)

    # training mode: batch statistics, the loss and the gradient of the first and last conv kernels
    conv_first = next(layer for layer in model.get_layer("resnet18_encoder").layers if layer.name == "conv1")
    conv_last = model.get_layer("depth_conv")
    with tf.GradientTape() as tape:
        pred = model(x, training=True)["depth"]
        loss_tf = tf.reduce_mean(tf_edge_aware(pred, tf.constant(gt), lam=0.5))
    g_first, g_last = tape.gradient(loss_tf, [conv_first.kernel, conv_last.kernel])

    twin.train()
    pred_t = twin(to_nchw(x))
    np.testing.assert_allclose(pred_t.detach().numpy().transpose(0, 2, 3, 1), pred.numpy(), rtol=1e-4, atol=1e-4)
    loss_t = edge_aware_loss(pred_t, to_nchw(gt), lam=0.5)
    assert float(loss_t.detach()) == pytest.approx(float(loss_tf), rel=1e-5)
    loss_t.backward()
    convs = [m for m in twin.parts if isinstance(m, torch.nn.Conv2d)]
    t_first, t_last = convs[0].weight.grad.numpy(), convs[-1].weight.grad.numpy()
    np.testing.assert_allclose(t_first.transpose(2, 3, 1, 0), g_first.numpy(), rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(t_last.transpose(2, 3, 1, 0), g_last.numpy(), rtol=2e-3, atol=1e-6)


def test_bench_compare_torch_reports_both_and_the_ratio(tmp_path):
    from tfdepth.bench.__main__ import main as bench_main

    data_dir = tmp_path / "tiny"
    write_tiny_dataset(data_dir, num_train=6, num_val=2, height=H, width=W)
    out = tmp_path / "bench.json"
    argv = ["--config", CONFIG, "--output", str(out), "--what", "", "--compare-torch", "--repeats", "2",
            "--min-run-s", "0.001", "--budget-s", "5000", "--matmul-size", "128", "--quiet"]
    for o in TINY + ["data.dataset=tfrecord", f"data.data_dir={data_dir}", f"data.input_size=[{H}, {W}]",
                     f"train.batch_size={B}"]:
        argv += ["--set", o]
    assert bench_main(argv) == 0
    report = json.loads(out.read_text())
    assert report["sections"] == ["torch"]
    c = report["torch"]
    ours, theirs = c["tfdepth"]["images_per_s"], c["torch"]["images_per_s"]
    assert len(ours["runs"]) == len(theirs["runs"]) == 2
    assert c["ratio"] == pytest.approx(ours["median"] / theirs["median"], rel=1e-3)
    assert (c["batch_size"], c["input_size"]) == (B, [H, W])
    assert c["torch"]["loss_finite"] and c["tfdepth"]["loss_finite"]
    fwd = c["forward_gflops_per_image"]
    assert c["torch"]["gflops_per_s"]["median"] == pytest.approx(theirs["median"] * 3 * fwd, rel=1e-4)
