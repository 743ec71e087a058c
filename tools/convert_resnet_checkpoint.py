#!/usr/bin/env python
"""Converts a torchvision / timm ResNet checkpoint into a Keras ``.weights.h5`` for a tfdepth encoder.

Keras has no ResNet-18 / 34 ImageNet weights; this is how to get them::

    python tools/convert_resnet_checkpoint.py --encoder resnet34 \
        --checkpoint resnet34-b627a593.pth --output weights/resnet34_imagenet.weights.h5

then set ``model.encoder_weights: weights/resnet34_imagenet.weights.h5`` in the config (passing the
``.pth`` / ``.safetensors`` path there directly works too; this saves doing it every run).

``.safetensors`` needs only the ``safetensors`` package; ``.pth`` needs torch.  Every checkpoint key is
checked (missing, unexpected or wrongly shaped keys are an error naming them; ``fc.*`` is ignored).
A torchvision ResNet-50 / 101 checkpoint gives the "torchvision" (v1.5) variant of the encoder, recorded
in the file so that loading it rebuilds the same variant (see ``tfdepth/models/encoders/weights.py``).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", required=True, choices=["resnet18", "resnet34", "resnet50", "resnet101"])
    parser.add_argument("--checkpoint", required=True, help="torchvision / timm state dict (.pth / .safetensors)")
    parser.add_argument("--output", required=True, help="output file, must end in .weights.h5")
    args = parser.parse_args(argv)

    from tfdepth.models.encoders.weights import convert_checkpoint

    try:
        summary = convert_checkpoint(args.encoder, args.checkpoint, args.output)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
