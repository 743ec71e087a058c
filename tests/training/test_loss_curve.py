"""loss_curve.png draws what its title and legend say: boundaries only where phases / chunks change, and a
run validated once gets a labelled point on an axis from 0."""

from tfdepth.training.logging import History


def _history(path, epochs):
    history = History(str(path / "history.json"))
    step = 0
    for phase, chunk, val in epochs:
        start = step + 1
        for _ in range(3):
            step += 1
            history.log_step({"step": step, "loss": 1.0 / step, "lr": 1e-3, "phase": phase, "chunk": chunk})
        record = {"phase": phase, "chunk": chunk, "start_step": start, "end_step": step}
        if val is not None:
            record["val"] = {"abs_rel": val}
        history.log_epoch(record)
    return history


def test_one_phase_validated_once(tmp_path):
    drawn = _history(tmp_path, [("main", "all", None), ("main", "all", 0.25)]).plot(str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 0
    assert drawn == {"title": "training loss and validation AbsRel", "validations": 1,
                     "legend": ["training loss", "validation AbsRel (1 validation)"]}  # no boundary promised


def test_phases_and_chunks_are_in_the_legend_only_when_drawn(tmp_path):
    epochs = [("base", "0", None), ("base", "1", 0.5), ("finetune", "all", 0.3)]
    drawn = _history(tmp_path, epochs).plot(str(tmp_path / "c.png"))
    assert drawn["legend"] == ["training loss", "phase starts", "chunk starts", "validation AbsRel (2 validations)"]
    (tmp_path / "other").mkdir()
    drawn = _history(tmp_path / "other", [("a", "all", None)]).plot(str(tmp_path / "d.png"))
    assert drawn["title"] == "training loss (no validation yet)" and drawn["legend"] == ["training loss"]
