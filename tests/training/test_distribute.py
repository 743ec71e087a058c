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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    """One ``dist_worker.py`` process; stdout and stderr go to files (no pipe fills while it waits)."""

    def __init__(self, directory, name, *args):
        self.out, self.err = (open(directory / f"{name}.{kind}", "w+") for kind in ("stdout", "stderr"))
        self.proc = subprocess.Popen([sys.executable, WORKER, *args], env=ENV, stdout=self.out, stderr=self.err,
                                     text=True)

    def finish(self, timeout=900):
        """(returncode, stdout, stderr) once the process has ended."""
        self.proc.wait(timeout=timeout)
        self.out.seek(0)
        self.err.seek(0)
        return self.proc.returncode, self.out.read(), self.err.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory, request):
    """The worker processes of the selected tests, all started at once: the two mirrored processes (each
    mostly one busy core while it builds and traces) go on beside the two multi-worker processes, so
    the two cores are kept busy; each test then waits for its own processes and checks their output."""
    base = tmp_path_factory.mktemp("dist_runs")
    selected = {item.name for item in request.session.items if item.module is request.module}
    started = {}
    if "test_mirrored_two_logical_cpus" in selected:
        # the uninterrupted run and the interrupted + resumed one, side by side in two processes
        started["mirrored"] = [Worker(base, "mirrored", "mirrored", str(base / "m"), data_dir),
                               Worker(base, "mirrored_resume", "mirrored_resume", str(base / "m_resumed"), data_dir)]
    if "test_multi_worker_two_local_processes" in selected:
        cluster = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
        started["multi_worker"] = [
            Worker(base, f"multi_worker{index}", "multi_worker", str(base / "mw"), data_dir,
                   json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}))
            for index in range(2)]
    yield base, started
    for workers in started.values():
        for worker in workers:
            worker.stop()


def test_mirrored_two_logical_cpus(runs):
    base, started = runs
    outputs = [worker.finish() for worker in started["mirrored"]]
    for returncode, _, stderr in outputs:
        assert returncode == 0, stderr[-3000:]
    result, resumed = (last_json(stdout) for _, stdout, _ in outputs)
    assert result["replicas"] == 2 and resumed["replicas"] == 2
    assert result["global_step"] == 4 and resumed["global_step"] == 4
    assert len(result["losses"]) == 4 and all(math.isfinite(v) for v in result["losses"])
    assert os.path.isfile(base / "m" / "metrics.json")
    # Mid-epoch resume under the strategy (no iterator state: the seeded epoch skips the batches done)
    # replays the uninterrupted run's losses (in another process: the seeded run is the same there).
    assert resumed["resumed_position"] == [1, 1]
    assert resumed["resumed_losses"] == pytest.approx(result["losses"], rel=1e-6)


def test_multi_worker_two_local_processes(runs):
    base, started = runs
    outputs = [worker.finish() for worker in started["multi_worker"]]
    for returncode, _, stderr in outputs:
        assert returncode == 0, stderr[-3000:]
    results = [last_json(stdout) for _, stdout, _ in outputs]
    assert [r["replicas"] for r in results] == [2, 2]
    assert [r["chief"] for r in results] == [True, False]
    # Gradients are all-reduced: both workers see the same global losses.
    assert results[0]["losses"] == pytest.approx(results[1]["losses"], rel=1e-5)
    workdir = str(base / "mw")
    assert os.path.isfile(os.path.join(workdir, "metrics.json"))
    assert os.path.isdir(os.path.join(workdir, "checkpoints"))
