"""tf.distribute: MirroredStrategy on 2 logical CPU devices, MultiWorkerMirroredStrategy with 2 local workers."""

import json
import math
import os
import socket
import subprocess
import sys

import pytest

from helpers import write_tiny_dataset

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dist_worker.py")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dist")
    write_tiny_dataset(directory, num_train=8, num_val=4, height=32, width=32, records_per_shard=4)
    return str(directory)


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def test_mirrored_two_logical_cpus(data_dir, tmp_path):
    out = subprocess.run([sys.executable, WORKER, "mirrored", str(tmp_path / "m"), data_dir], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = last_json(out.stdout)
    assert result["replicas"] == 2
    assert result["global_step"] == 4
    assert len(result["losses"]) == 4 and all(math.isfinite(v) for v in result["losses"])
    assert os.path.isfile(tmp_path / "m" / "metrics.json")
    # Mid-epoch resume under the strategy (no iterator state: the seeded epoch skips the batches done)
    # replays the uninterrupted run's losses.
    assert result["resumed_position"] == [1, 1]
    assert result["resumed_losses"] == pytest.approx(result["losses"], rel=1e-6)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multi_worker_two_local_processes(data_dir, tmp_path):
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    workdir = str(tmp_path / "mw")
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen([sys.executable, WORKER, "multi_worker", workdir, data_dir, tf_config],
                                      env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=400) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
    results = [last_json(stdout) for stdout, _ in outputs]
    assert [r["replicas"] for r in results] == [2, 2]
    assert [r["chief"] for r in results] == [True, False]
    # Gradients are all-reduced: both workers see the same global losses.
    assert results[0]["losses"] == pytest.approx(results[1]["losses"], rel=1e-5)
    assert os.path.isfile(os.path.join(workdir, "metrics.json"))
    assert os.path.isdir(os.path.join(workdir, "checkpoints"))
