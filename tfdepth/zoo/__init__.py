"""The recipe zoo: every recipe of ``configs/`` trained and scored under one protocol, side by side with
its paper's published numbers (``python -m tfdepth.zoo``, docs/zoo.md).

``recipes.yaml`` names each recipe, its config and (for ``--scale cpu``) the ``--set`` overrides that
scale it to a 2-core CPU on the embedded synthetic data; ``papers.yaml`` holds the published numbers
with their citation; ``catalogue.py`` reads both, ``run.py`` trains and scores, ``report.py`` writes
``zoo.json`` and ``zoo.md``.
"""
