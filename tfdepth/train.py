"""``python -m tfdepth.train --config FILE --workdir DIR [--seed N] [--deterministic] [--set k=v]``

Trains (or resumes: running the same command on the same workdir continues from the last checkpoint;
a finished run says so and exits 0; a damaged newest checkpoint is skipped, named in the log, for the
newest one that restores; ``--restart`` moves a previous run aside into ``WORKDIR/previous-<time>/``
and starts afresh), then evaluates on the validation split and writes
``metrics.json`` (model vs. the constant-median baseline).

With ``model.init_from`` a fresh run starts from a trained model's weights (``init_report.json`` in
the workdir lists what was loaded, new and skipped); a workdir with checkpoints of its own resumes
from them instead. A curriculum phase (``chunks: each``) on a dataset with fewer chunks than its
recipe's ``min_chunks`` is refused unless ``--allow-fewer-chunks``.
"""

from __future__ import annotations

import argparse

from tfdepth import cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfdepth.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_args(parser)
    parser.add_argument("--workdir", required=True, help="run directory (checkpoints, logs, metrics.json)")
    parser.add_argument("--seed", type=int, help="overrides train.seed and data.synthetic seed of shuffling")
    parser.add_argument("--deterministic", action="store_true",
                        help="op determinism + deterministic input pipeline (bit-exact resume)")
    parser.add_argument("--restart", action="store_true",
                        help="move the workdir's previous run (checkpoints, history, metrics, config) aside into "
                             "WORKDIR/previous-<YYYYmmdd-HHMMSS>/ and start afresh (nothing is deleted)")
    parser.add_argument("--allow-fewer-chunks", action="store_true",
                        help="train a chunks: each phase on a dataset with fewer chunks than its recipe's "
                             "min_chunks (the paper's count): a warning instead of an error")
    args = parser.parse_args(argv)

    from tfdepth.config import load_config

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if args.deterministic:
        overrides += ["train.deterministic=true", "data.deterministic=true"]
    cfg = load_config(args.config, overrides, warn=True)  # doubtful training settings: one line each

    from tfdepth.training.loop import Trainer

    Trainer(cfg, args.workdir, restart=args.restart, allow_fewer_chunks=args.allow_fewer_chunks).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
