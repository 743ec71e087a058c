"""``python -m tfdepth.info --config FILE [--set k=v]``: JSON with parameter counts, shapes and FLOPs.

Keys: ``model``, ``encoder``, ``total_params`` (all Keras weights, BatchNorm statistics included),
``trainable_params``, ``encoder_params`` (in the encoder's reference convention, see
``encoder_param_convention``), ``input_shape``, ``output_shapes`` (by output name), ``forward_gflops``
(per image, 2 FLOPs per multiply-add).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from tfdepth import cli


def model_info(cfg) -> dict:
    import keras

    from tfdepth.models.build import build_encoder, build_model
    from tfdepth.models.encoders import PARAM_COUNT_CONVENTION, encoder_parameter_count
    from tfdepth.models.flops import forward_flops

    keras.mixed_precision.set_global_policy("float32")
    model_cfg = dataclasses.replace(cfg.model, encoder_weights="none")  # counts do not need weights
    model = build_model(model_cfg, cfg.data.input_size)
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
        "forward_gflops": round(forward_flops(model) / 1e9, 4),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfdepth.info", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_args(parser)
    args = parser.parse_args(argv)

    from tfdepth.config import load_config

    print(json.dumps(model_info(load_config(args.config, args.overrides)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
