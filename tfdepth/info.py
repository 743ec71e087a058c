"""``tfdepth info --config FILE [--set k=v]`` or ``tfdepth info WORKDIR``: JSON with a model's
parameter counts, shapes and FLOPs. ``tfdepth info --list``: every registry with its names.

Keys: ``model``, ``encoder``, ``total_params`` (all Keras weights, BatchNorm statistics included),
``trainable_params``, ``encoder_params`` (in the encoder's reference convention, see
``encoder_param_convention``), ``input_shape``, ``output_shapes`` (by output name), ``forward_gflops``
(per image, 2 FLOPs per multiply-add).

``WORKDIR`` reads ``WORKDIR/config.yaml`` (the config a training run saved). ``--list`` prints each
registry of ``tfdepth.registries`` (encoders, decoders, losses, schedules, optimisers, strategies,
evaluation protocols, depth encodings, dataset formats) with a one-line description per name,
without starting TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from tfdepth import cli


def model_info(cfg) -> dict:
    import keras

    from tfdepth.models.build import build_encoder, build_model
    from tfdepth.models.encoders.common import PARAM_COUNT_CONVENTION, encoder_parameter_count
    from tfdepth.models.flops import forward_gflops_or_none

    keras.mixed_precision.set_global_policy("float32")
    model_cfg = dataclasses.replace(cfg.model, encoder_weights="none")  # counts do not need weights
    model = build_model(model_cfg, cfg.data.input_size, cfg.data.max_depth_m)
    encoder = build_encoder(model_cfg, cfg.data.input_size)
    return {
        "model": model.name,
        "encoder": cfg.model.encoder,
        "decoder": cfg.model.decoder,
        "total_params": int(model.count_params()),
        "trainable_params": int(sum(int(v.numpy().size) for v in model.trainable_variables)),
        "encoder_params": int(encoder_parameter_count(model_cfg.encoder, encoder)),
        "encoder_param_convention": PARAM_COUNT_CONVENTION[model_cfg.encoder],
        "input_shape": [None, *[int(s) for s in cfg.data.input_size], 3],
        "output_shapes": {k: [None, *[int(d) for d in v.shape[1:]]] for k, v in model.output.items()},
        "forward_gflops": forward_gflops_or_none(model),
    }


def registry_listing() -> str:
    """Every registry of the catalogue: a heading per registry, then ``name  description`` lines."""
    from tfdepth.registries import ALL

    blocks = []
    for registry in ALL:
        width = max(map(len, registry.names()), default=0)
        lines = [f"{registry.kind}: {registry.description}"]
        lines += [f"  {name:<{width}}  {registry.entry(name).description}" for name in registry.names()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tfdepth info", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", nargs="?", help="a training run's directory (reads WORKDIR/config.yaml)")
    cli.add_config_args(parser, required=False)
    parser.add_argument("--list", action="store_true", help="list every registry's names with a description")
    args = parser.parse_args(argv)

    if args.list:
        print(registry_listing())
        return 0
    if (args.workdir is None) == (args.config is None):
        parser.error("give either --config FILE or a WORKDIR (or --list)")
    path = args.config
    if args.workdir is not None:
        path = os.path.join(args.workdir, "config.yaml")
        if not os.path.isfile(path):
            raise cli.UserError(f"{args.workdir}: no config.yaml (not a training run's directory?)")

    from tfdepth.config import load_config

    print(json.dumps(model_info(load_config(path, args.overrides)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
