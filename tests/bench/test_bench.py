"""The benchmark command: statistics helpers, the time budget, and one tiny run of every section.

No assertion is about speed: the run checks the JSON's structure and that its numbers agree with
each other and with formulas (images/s = batch / step seconds, GFLOP/s = images/s x 3 x forward
FLOPs, ratio_to_train = input / train images/s, ...).
"""

import json
import os

import numpy as np
import pytest

from helpers import REPO_ROOT, write_tiny_dataset
from tfdepth import cli
from tfdepth.bench import BenchError, scaling, timing
from tfdepth.bench.__main__ import main as bench_main

SIZE = 32
BATCH = 2
REPEATS = 2
TINY = ["data.dataset=tfrecord", f"data.input_size=[{SIZE}, {SIZE}]", "model.encoder=resnet18",
        f"train.batch_size={BATCH}"]


class FakeClock:
    """Stands in for time.perf_counter: only the fake calls advance it."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", fake)
    return fake


def test_summarize_scaled_inverted():
    stats = timing.summarize([3.0, 1.0, 2.0, 10.0])
    assert stats == {"median": 2.5, "min": 1.0, "max": 10.0, "runs": [3.0, 1.0, 2.0, 10.0]}
    assert timing.scaled(stats, 2.0)["runs"] == [6.0, 2.0, 4.0, 20.0]
    inv = timing.inverted(timing.summarize([0.5, 0.25, 2.0]), 8.0)
    assert inv["runs"] == [16.0, 32.0, 4.0]
    assert (inv["median"], inv["min"], inv["max"]) == (16.0, 4.0, 32.0)
    with pytest.raises(ValueError):
        timing.summarize([])


def test_timed_runs_repeats_calls_until_min_run_s(clock):
    calls = []

    def call():  # one call "takes" 0.1 s
        calls.append(1)
        clock.now += 0.1

    result = timing.timed_runs(call, repeats=3, min_run_s=0.25)
    # calibration call (0.1 s) -> 3 calls per run to last >= 0.25 s; the calibration is not a run
    assert result["calls_per_run"] == 3
    assert len(calls) == 1 + 3 * 3
    assert result["seconds_per_call"]["runs"] == pytest.approx([0.1, 0.1, 0.1])
    assert result["cut_by_budget"] is False

    calls.clear()
    result = timing.timed_runs(call, repeats=3, min_run_s=0.05)
    # one call already lasts long enough: the calibration call is the first run
    assert result["calls_per_run"] == 1 and len(calls) == 3


def test_budget_shares_and_cut_runs(clock):
    budget = timing.Budget(100.0, ["train", "input", "infer", "scaling"])
    weights = timing.SECTION_WEIGHTS
    total = sum(weights[s] for s in ("train", "input", "infer", "scaling"))  # the sections of this run only
    assert budget.begin("train") == pytest.approx(100.0 * weights["train"] / total)
    clock.now += 10.0  # train used 10 s of its share: the rest flows to the later sections
    left = 90.0
    assert budget.begin("input") == pytest.approx(left * weights["input"] / (total - weights["train"]))
    assert budget.fits(1.0) and not budget.fits(1000.0)
    assert "time budget" in budget.skip_reason(1000.0)

    # runs stop (keeping at least one) when the next would pass the section's deadline
    small = timing.Budget(10.0, ["scaling"])
    small.begin("scaling")  # the whole 10 s

    def slow():
        clock.now += 4.0

    result = timing.timed_runs(slow, repeats=5, min_run_s=0.1, budget=small)
    assert result["cut_by_budget"] is True
    assert result["seconds_per_call"]["runs"] == [4.0, 4.0]  # 8 s used; a third run would end at 12 s


def test_scaling_points_table_and_plot(tmp_path):
    assert scaling.scaling_points([256, 128], [4, 1, 2], "cross") == [(128, 1), (128, 2), (128, 4), (256, 1)]
    assert scaling.scaling_points([128, 256], [1, 2], "full") == [(128, 1), (128, 2), (256, 1), (256, 2)]
    with pytest.raises(BenchError):
        scaling.scaling_points([128], [1], "diagonal")

    def row(size, batch, train_s, infer_s):
        return {"size": [size, size], "batch": batch, "forward_gflops_per_image": 1.5,
                "train_step_s": timing.summarize([train_s, train_s * 1.1]),
                "train_images_per_s": timing.inverted(timing.summarize([train_s, train_s * 1.1]), batch),
                "infer_batch_s": timing.summarize([infer_s]),
                "infer_images_per_s": timing.inverted(timing.summarize([infer_s]), batch)}

    rows = [row(128, 1, 0.2, 0.05), row(128, 2, 0.35, 0.08), row(256, 1, 0.8, 0.2),
            {"size": [480, 480], "batch": 1, "skipped": "time budget: predicted 99 s"}]
    table = scaling.scaling_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    # train: median of 0.2 and 0.22 s; images/s: median of 1/0.2 and 1/0.22 = 4.77
    assert table[2] == "| 128x128 | 1 | 1.5 | 0.21 (0.2-0.22) | 4.77 | 0.05 (0.05-0.05) | 20 |"
    assert "time budget" in table[-1]
    path = scaling.plot_scaling(rows, str(tmp_path / "s.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_are_clear_errors(capsys):
    config = str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml")
    assert cli.run_main(bench_main, ["--config", config, "--what", "train,speed"]) == 2
    assert "--what: 'speed' is not one of train, input, infer, scaling" in capsys.readouterr().err
    assert cli.run_main(bench_main, ["--config", config, "--scaling-sizes", "128,0"]) == 2
    assert "--scaling-sizes" in capsys.readouterr().err
    assert cli.run_main(bench_main, ["--config", config, "--tflite", "int4"]) == 2
    assert "--tflite: 'int4'" in capsys.readouterr().err


def check_stats(stats, n=REPEATS):
    assert set(stats) == {"median", "min", "max", "runs"}
    assert len(stats["runs"]) == n
    assert all(v > 0 and np.isfinite(v) for v in stats["runs"])
    assert stats["min"] == min(stats["runs"]) and stats["max"] == max(stats["runs"])
    assert stats["median"] == pytest.approx(float(np.median(stats["runs"])), rel=1e-5)


def per_run(stats, fn):
    return [fn(v) for v in stats["runs"]]


def test_bench_command_tiny_all_sections(tmp_path, capsys):
    data_dir = tmp_path / "tiny"
    write_tiny_dataset(data_dir, num_train=12, num_val=4, height=SIZE, width=SIZE)
    out = tmp_path / "out" / "bench.json"
    overrides = TINY + [f"data.data_dir={data_dir}"]
    argv = ["--config", str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"), "--output", str(out),
            "--repeats", str(REPEATS), "--min-run-s", "0.001", "--budget-s", "5000", "--matmul-size", "256",
            "--train-variants", "mixed_float16", "--tflite", "none", "--scaling-sizes", f"{SIZE}",
            "--scaling-batches", "1,2", "--quiet"]
    for o in overrides:
        argv += ["--set", o]
    assert bench_main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert {"train", "input", "infer", "scaling", "machine"} <= set(report)

    # Forward FLOPs counted independently of the bench.
    from tfdepth.config import load_config
    from tfdepth.models.build import build_model
    from tfdepth.models.flops import forward_flops

    cfg = load_config(str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"), overrides)
    fwd_gflops = forward_flops(build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)) / 1e9

    matmul = report["machine"]["matmul"]
    check_stats(matmul["gflops_per_s"], n=len(matmul["gflops_per_s"]["runs"]))

    # ---- train
    train = report["train"]
    # the yardstick is re-measured in the training rounds, under the same load as the step
    check_stats(train["matmul"]["gflops_per_s"])
    assert train["matmul"]["size"] == 256
    peak = train["matmul_gflops_per_s"]
    assert peak == train["matmul"]["gflops_per_s"]["median"]
    graph = train["variants"]["graph"]
    check_stats(graph["step_s"])
    check_stats(graph["images_per_s"])
    assert graph["images_per_s"]["runs"] == pytest.approx(per_run(graph["step_s"], lambda s: BATCH / s), rel=1e-4)
    assert train["images_per_s"] == graph["images_per_s"]["median"]
    assert train["forward_gflops_per_image"] == pytest.approx(fwd_gflops)
    assert train["gflops_per_s"] == pytest.approx(train["images_per_s"] * 3 * fwd_gflops, rel=1e-4)
    assert train["fraction_of_matmul"] == pytest.approx(train["gflops_per_s"] / peak, abs=1e-4)
    assert graph["tracing_count_after"] == 1 and train["retraced"] is False  # no retracing in the loop
    assert graph["loss_finite"] is True
    assert graph["trace_s"] > 0 and graph["compile_s"] >= graph["trace_s"]
    assert (graph["batch_size"], graph["jit_compile"], graph["mixed_precision"]) == (BATCH, False, "float32")
    e2e = train["variants"]["graph_end_to_end"]
    check_stats(e2e["images_per_s"])
    assert e2e["ratio_to_graph"] == pytest.approx(e2e["images_per_s"]["median"] / train["images_per_s"], rel=1e-3)
    assert train["variants"]["xla"] == {"skipped": "not requested (--train-variants)"}
    fp16 = train["variants"]["mixed_float16"]
    if report["machine"]["device"] == "CPU":
        assert "CPU" in fp16["skipped"]

    # ---- input
    inp = report["input"]
    check_stats(inp["pipeline_images_per_s"])
    assert inp["images_per_s"] == inp["pipeline_images_per_s"]["median"]
    assert inp["ratio_to_train"] == pytest.approx(inp["images_per_s"] / train["images_per_s"], rel=1e-3)
    assert inp["batches_per_run"] == 12 // BATCH
    assert inp["meets_5x"] == (inp["ratio_to_train"] >= 5)

    # ---- infer
    infer = report["infer"]
    assert infer["input_size"] == [SIZE, SIZE] and infer["batch"] == 8
    keras_result = infer["variants"]["keras"]
    for name in ("keras", "saved_model", "tflite_fp32"):
        v = infer["variants"][name]
        assert "error" not in v, v
        check_stats(v["latency_ms"])
        check_stats(v["images_per_s"])
        assert v["batch1_images_per_s"]["runs"] == pytest.approx(per_run(v["latency_ms"], lambda ms: 1000 / ms),
                                                                 rel=1e-4)
    assert infer["latency_ms"] == keras_result["latency_ms"]["median"]
    assert keras_result["tracing_count"] == 1  # one trace serves batch 1 and batch 8
    assert infer["variants"]["saved_model"]["output_shape"] == [1, SIZE, SIZE, 1]
    tfl = infer["variants"]["tflite_fp32"]
    assert tfl["input_dtype"] == "float32" and tfl["threads"] == 2 and tfl["file_size_bytes"] > 1e6
    assert tfl["max_abs_diff_from_keras_m"] < 1e-3  # the fp32 conversion computes the same function
    assert set(infer["variants"]) == {"keras", "saved_model", "tflite_fp32"}

    # ---- scaling
    scaled_rows = report["scaling"]
    rows = scaled_rows["rows"]
    assert [(r["size"], r["batch"]) for r in rows] == [([SIZE, SIZE], 1), ([SIZE, SIZE], 2)]
    for r in rows:
        assert r["forward_gflops_per_image"] == pytest.approx(fwd_gflops)
        check_stats(r["train_step_s"])
        check_stats(r["infer_batch_s"])
        b = r["batch"]
        assert r["train_images_per_s"]["runs"] == pytest.approx(per_run(r["train_step_s"], lambda s: b / s), rel=1e-4)
        assert r["infer_images_per_s"]["runs"] == pytest.approx(per_run(r["infer_batch_s"], lambda s: b / s), rel=1e-4)
        assert r["train_gflops_per_s"] == pytest.approx(3 * fwd_gflops * b / r["train_step_s"]["median"], rel=1e-3)
        assert r["train_tracing_count"] == 1 and r["infer_tracing_count"] == 1  # one trace per size
    assert os.path.isfile(scaled_rows["plot"]) and scaled_rows["plot"].endswith("bench_scaling.png")
    with open(scaled_rows["table_file"]) as f:
        assert f.read().splitlines() == scaled_rows["table"]
    assert len(scaled_rows["table"]) == 2 + len(rows)

    assert set(report["section_s"]) == {"train", "input", "infer", "scaling"}
    assert report["total_s"] >= sum(report["section_s"].values())
    assert "images/s" in printed and "| size | batch |" in printed
