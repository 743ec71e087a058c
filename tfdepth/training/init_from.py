"""Fine-tuning from anything trained: ``model.init_from`` loads every matching weight into a new run.

A fresh run (no checkpoint of its own in its workdir: a resume always takes priority, and says so)
whose config sets ``model.init_from: SOURCE`` starts from SOURCE's weights, then trains on its own
config and data from step 0 with a new optimiser. SOURCE is one of

* a tfdepth **workdir** (its latest checkpoint in ``checkpoints/``), a checkpoint directory (e.g.
  ``WORKDIR/checkpoints/best``) or a checkpoint prefix (``.../ckpt-12``): the model is built from the
  ``config.yaml`` beside or above it and restored (:func:`tfdepth.training.checkpoint.load_trained_model`);
* a **.keras** file (``keras.saving.load_model``);
* a **SavedModel** directory (``saved_model.pb``; a TF Serving export directory ``DIR/N/``: the highest
  version): its variables by name (``path:0``), as written by ``tfdepth.export``;
* ``SCHEME:ARG``, a converted model of the catalogue's ``registries.INIT_SOURCES`` (e.g. converters
  of published checkpoints), whose target returns a ``keras.Model`` or ``{variable path: array}``.

Weights-only files (``.weights.h5``, ``.h5``) hold no variable names to match and are refused (an
encoder's weight file is ``model.encoder_weights``).

Matching: every weight of the model (trainable and not: BatchNorm statistics too) is looked up by its
Keras 3 ``variable.path`` (``layer/variable``; the n-th repeat of a path, if any, as ``path#n``) in
the source. Same path and shape: **loaded**. No such path in the source: **new** (it keeps its
initialisation: ``model.encoder_weights`` or random). Same path, other shape, or a source weight
whose path the model does not have: **skipped**, with the reason. The counts are printed and
everything is written to ``WORKDIR/init_report.json``; ``model.init_strict: true`` makes any skipped
weight an error (:class:`UserError` naming them), raised after the report is written. New weights are
allowed under ``init_strict`` (a new head on a trained encoder).
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, TextIO, Tuple

import keras
import numpy as np
import tensorflow as tf

from tfdepth.config import ExperimentConfig
from tfdepth.config_checks import init_scheme
from tfdepth.errors import UserError
from tfdepth.io.files import write_json
from tfdepth.registries import INIT_SOURCES
from tfdepth.training.checkpoint import CHECKPOINT_DIR, CONFIG_NAME, INDEX_NAME, load_trained_model, resolve_checkpoint

REPORT_NAME = "init_report.json"


def supported() -> str:
    """What ``model.init_from`` accepts, for messages."""
    schemes = INIT_SOURCES.names()
    return ("a tfdepth workdir, checkpoint directory or ckpt-N prefix, a .keras file or a SavedModel directory"
            + (f", or SCHEME:ARG with SCHEME one of {', '.join(schemes)}" if schemes else ""))


def keyed(paths: List[str]) -> List[str]:
    """``paths`` made unique: the n-th repeat of a path (n >= 2) becomes ``path#n``."""
    seen: Dict[str, int] = {}
    out = []
    for path in paths:
        seen[path] = seen.get(path, 0) + 1
        out.append(path if seen[path] == 1 else f"{path}#{seen[path]}")
    return out


def model_weights(model: keras.Model) -> Dict[str, np.ndarray]:
    """``{variable path: value}`` of every weight of a Keras model."""
    weights = model.weights
    return dict(zip(keyed([v.path for v in weights]), (np.asarray(v.numpy()) for v in weights)))


def _saved_model_dir(path: str) -> Optional[str]:
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = [d for d in os.listdir(path) if d.isdigit() and os.path.isfile(os.path.join(path, d, "saved_model.pb"))]
    return os.path.join(path, max(versions, key=int)) if versions else None


def _is_checkpoint(path: str) -> bool:
    """A checkpoint prefix, a checkpoint directory, or a workdir (``config.yaml`` / ``checkpoints/``)."""
    if os.path.isfile(path + ".index"):
        return True
    if not os.path.isdir(path):
        return False
    if os.path.isfile(os.path.join(path, CONFIG_NAME)) or os.path.isdir(os.path.join(path, CHECKPOINT_DIR)):
        return True
    return os.path.isfile(os.path.join(path, INDEX_NAME)) or any(
        n.startswith("ckpt-") and n.endswith(".index") for n in os.listdir(path))


def source_weights(spec: str, cfg: Optional[ExperimentConfig] = None) -> Tuple[str, Dict[str, np.ndarray]]:
    """``(what SOURCE is, {key: value})`` of every weight of ``spec`` (see the module docstring); a
    :class:`UserError` naming what is supported when ``spec`` is none of them."""
    scheme = init_scheme(spec)
    if scheme is not None and scheme in INIT_SOURCES:
        loaded = INIT_SOURCES.get(scheme)(spec[len(scheme) + 1:], cfg)
        if isinstance(loaded, keras.Model):
            return f"{scheme} (converted)", model_weights(loaded)
        return f"{scheme} (converted)", {k: np.asarray(v) for k, v in dict(loaded).items()}
    if not os.path.exists(spec) and not os.path.isfile(spec + ".index"):
        raise UserError(f"model.init_from: {spec} does not exist (expected {supported()})")
    if spec.endswith((".weights.h5", ".h5")):
        raise UserError(f"model.init_from: {spec} is a weights-only file, which holds no variable names to match; "
                        f"give {supported()} (an encoder's weight file is model.encoder_weights)")
    if spec.endswith(".keras"):
        try:
            model = keras.saving.load_model(spec, compile=False)
        except Exception as e:  # noqa: BLE001 -- any failure to read the file is the user's to fix
            raise UserError(f"model.init_from: {spec} does not load as a Keras model ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:300] if str(e) else ''})") from None
        return "keras file", model_weights(model)
    if os.path.isdir(spec) and _saved_model_dir(spec):
        directory = _saved_model_dir(spec)
        loaded = tf.saved_model.load(directory)
        variables = list(loaded.variables)
        names = keyed([v.name[:-2] if v.name.endswith(":0") else v.name for v in variables])
        return f"SavedModel {directory}", dict(zip(names, (v.numpy() for v in variables)))
    if _is_checkpoint(spec):
        try:
            prefix = resolve_checkpoint(spec)
        except FileNotFoundError as e:
            raise UserError(f"model.init_from: {e}") from None
        policy = keras.mixed_precision.global_policy()
        try:
            model, _ = load_trained_model(prefix)
        except FileNotFoundError as e:
            raise UserError(f"model.init_from: {e}") from None
        finally:
            keras.mixed_precision.set_global_policy(policy)  # load_trained_model builds in float32
        return f"checkpoint {prefix}", model_weights(model)
    raise UserError(f"model.init_from: {spec} is not something weights can be loaded from (expected {supported()})")


def match(model: keras.Model, source: Dict[str, np.ndarray]) -> Tuple[List[Tuple[keras.Variable, np.ndarray]], dict]:
    """``(assignments, report)``: which of ``model``'s weights take which source value, and the
    report's ``loaded`` / ``new`` / ``skipped`` lists (see the module docstring)."""
    weights = model.weights
    keys = keyed([v.path for v in weights])
    assignments, loaded, new, skipped = [], [], [], []
    for key, variable in zip(keys, weights):
        shape = tuple(int(d) for d in variable.shape)
        if key not in source:
            new.append({"path": key, "shape": list(shape)})
            continue
        value = source[key]
        if tuple(value.shape) != shape:
            skipped.append({"path": key,
                            "reason": f"shape {list(value.shape)} in the source, {list(shape)} in the model"})
            continue
        assignments.append((variable, value))
        loaded.append({"path": key, "shape": list(shape)})
    for key in sorted(set(source) - set(keys)):
        skipped.append({"path": key, "reason": f"in the source ({list(source[key].shape)}), not in the model"})
    values = int(sum(np.prod(item["shape"], dtype=np.int64) for item in loaded))
    report = {"loaded": loaded, "new": new, "skipped": skipped,
              "counts": {"model_weights": len(weights), "source_weights": len(source), "loaded": len(loaded),
                         "loaded_values": values, "new": len(new), "skipped": len(skipped)}}
    return assignments, report


def _names(items: List[dict], limit: int = 8) -> str:
    shown = ", ".join(item["path"] + (f" ({item['reason']})" if "reason" in item else "") for item in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def initialize(model: keras.Model, spec: str, strict: bool, report_dir: str, log: Optional[TextIO] = None,
               cfg: Optional[ExperimentConfig] = None) -> dict:
    """Load every matching weight of ``spec`` into ``model``; writes ``report_dir/init_report.json``,
    prints a summary to ``log`` and returns the report. ``strict``: a skipped weight raises
    :class:`UserError` (after the report is written; nothing is assigned then)."""
    kind, source = source_weights(spec, cfg)
    assignments, report = match(model, source)
    report = {"source": spec, "kind": kind, "strict": strict, **report}
    path = os.path.join(report_dir, REPORT_NAME)
    write_json(path, report)
    counts = report["counts"]
    if strict and report["skipped"]:
        raise UserError(f"model.init_from {spec} with model.init_strict: {counts['skipped']} weight(s) skipped: "
                        f"{_names(report['skipped'], limit=40)}; the full list is in {path}")
    for variable, value in assignments:
        variable.assign(value.astype(keras.backend.standardize_dtype(variable.dtype)))
    if log is not None:
        print(f"model.init_from {spec} ({kind}): loaded {counts['loaded']} of the model's {counts['model_weights']} "
              f"weights ({counts['loaded_values']:,} values), {counts['new']} new"
              + (f" ({_names(report['new'])})" if report["new"] else "")
              + f", {counts['skipped']} skipped" + (f" ({_names(report['skipped'])})" if report["skipped"] else "")
              + f"; report: {path}", file=log)
    return report
