"""``python -m tfdepth.zoo --recipes all|NAME,... --scale cpu|paper --output DIR [--set k=v] [--data-dir D]``

Trains every chosen recipe (``tfdepth/zoo/recipes.yaml``) into ``DIR/<recipe>/`` with the library's
trainer, scores it and the constant-median baseline on the validation split, and writes ``DIR/zoo.json``
and ``DIR/zoo.md`` (ours beside the papers' published numbers, ``tfdepth/zoo/papers.yaml``).

``--scale cpu``: each recipe's architecture, loss, optimiser and schedule shape at a size that trains
on the embedded synthetic data on a 2-core CPU, all on one synthetic dataset (``DIR/data`` unless
``--data-dir``), from scratch, with the same protocol. ``--scale paper``: each recipe's own config on
its own dataset; what is missing (data, weights) is listed first, one line each, and nothing trains.
``--set`` applies to every recipe, after the zoo's own overrides. Resumable: a finished recipe is not
retrained, an interrupted one resumes exactly. docs/zoo.md has the scaling choices and a full table.
"""

from __future__ import annotations

import argparse

from tfdepth import cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfdepth.zoo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="all", help="all, or a comma-separated list of recipe names")
    parser.add_argument("--scale", required=True, choices=("cpu", "paper"))
    parser.add_argument("--output", required=True, help="output directory (one workdir per recipe, zoo.json, zoo.md)")
    parser.add_argument("--data-dir", help="--scale cpu: the synthetic dataset's directory (default DIR/data)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key of every recipe (after the zoo's), e.g. --set train.batch_size=4")
    cli.add_verbose_arg(parser)
    args = parser.parse_args(argv)

    from tfdepth.zoo import catalogue
    from tfdepth.zoo.run import run_zoo

    _, recipes = catalogue.load_recipes()
    chosen = catalogue.select(args.recipes, recipes)
    data = run_zoo(chosen, args.scale, args.output, args.overrides, data_dir=args.data_dir)
    print(f"zoo: {len(data['recipes'])} recipe(s) in {args.output}/zoo.json and {args.output}/zoo.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
