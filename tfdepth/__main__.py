"""``tfdepth <command> [args]`` (console script) and ``python -m tfdepth <command> [args]``.

Each command is the module ``tfdepth.<command>`` (``python -m tfdepth.<command>`` works the same);
this only picks the module and hands it the remaining arguments.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, one-line description); the modules are imported only when chosen
COMMANDS = {
    "train": ("tfdepth.train", "train (or resume) a model from a config into a workdir"),
    "evaluate": ("tfdepth.evaluate", "score a trained model or prediction files with a protocol"),
    "predict": ("tfdepth.predict", "depth maps, colour pictures and point clouds for photos or videos"),
    "export": ("tfdepth.export", "SavedModel for TF Serving and TFLite variants with accuracy reports"),
    "convert": ("tfdepth.convert", "turn a dataset (NYU, KITTI, your captures) into TFRecord shards"),
    "inspect": ("tfdepth.data.inspect", "counts, depth histogram and contact sheet of a converted dataset"),
    "info": ("tfdepth.info", "parameters, shapes and FLOPs of a config's model; --list the registries"),
    "bench": ("tfdepth.bench.__main__", "training, input and inference speed"),
    "measure": ("tfdepth.measure.__main__", "the measuring web page"),
    "zoo": ("tfdepth.zoo.__main__", "every recipe trained and scored side by side, beside its paper (docs/zoo.md)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: tfdepth <command> [args]   (or python -m tfdepth <command>)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "tfdepth <command> --help shows a command's options; every command takes --verbose (TensorFlow's",
              "start-up messages, hidden by default)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; allowed: {', '.join(COMMANDS)}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    from tfdepth import cli

    sys.argv[0] = f"tfdepth {name}"
    return cli.run_main(module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
