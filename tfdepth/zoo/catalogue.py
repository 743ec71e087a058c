"""The zoo's two data files, read and checked: ``recipes.yaml`` (short names, configs, the CPU-scale
overrides) and ``papers.yaml`` (published numbers with their citation); resolving a recipe's config at
a scale; what a recipe needs at paper scale that is not on this machine.

Nothing here imports TensorFlow: a mistake (an unknown recipe, a bad ``--set``, a config that does not
load) is a :class:`~tfdepth.errors.UserError` / :class:`~tfdepth.errors.ConfigError` before anything
is built or trained.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Dict, List, Optional, Sequence

import yaml

from tfdepth.config import ExperimentConfig, load_config
from tfdepth.errors import ConfigError, UserError

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPES_FILE = os.path.join(HERE, "recipes.yaml")
PAPERS_FILE = os.path.join(HERE, "papers.yaml")
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
SCALES = ("cpu", "paper")
PAPER_KEYS = ("citation", "file", "table", "row", "dataset", "abs_rel", "rmse", "d1", "note")


@dataclasses.dataclass
class Recipe:
    name: str
    config: str  # path of the recipe's config (relative to the repository root as written)
    paper: str  # key of papers.yaml
    cpu: List[str]  # --set overrides of --scale cpu (after the common ones)
    scaled: str  # what --scale cpu changes, in words

    def config_path(self) -> str:
        return self.config if os.path.isabs(self.config) else os.path.join(REPO_ROOT, self.config)


def _read_yaml(path: str) -> dict:
    with open(path) as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a mapping")
    return data


def load_recipes(path: str = RECIPES_FILE) -> "tuple[List[str], Dict[str, Recipe]]":
    """``(common overrides, {name: Recipe})`` in the file's order; every key checked."""
    data = _read_yaml(path)
    common = data.get("common") or []
    recipes = {}
    for name, entry in (data.get("recipes") or {}).items():
        unknown = sorted(set(entry) - {"config", "paper", "cpu", "scaled"})
        if unknown or "config" not in entry:
            raise UserError(f"{path}: recipes.{name}: needs config (and paper, cpu, scaled); unknown keys {unknown}")
        recipes[name] = Recipe(name, entry["config"], entry.get("paper", ""), list(entry.get("cpu") or []),
                               " ".join(str(entry.get("scaled", "")).split()))
    return list(common), recipes


def load_papers(path: str = PAPERS_FILE) -> Dict[str, dict]:
    data = _read_yaml(path)
    for key, entry in data.items():
        missing = [k for k in PAPER_KEYS if k not in entry]
        if missing:
            raise UserError(f"{path}: {key}: missing {', '.join(missing)}")
    return data


def select(spec: str, recipes: Dict[str, Recipe]) -> List[Recipe]:
    """``all`` or ``NAME,NAME``: the recipes in the catalogue's order; an unknown name is a UserError."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise UserError(f"--recipes {spec!r}: give all or a comma-separated list of {', '.join(recipes)}")
    if names == ["all"]:
        return list(recipes.values())
    unknown = [n for n in names if n not in recipes]
    if unknown:
        raise UserError(f"--recipes: unknown recipe {', '.join(map(repr, unknown))}; known: all, {', '.join(recipes)}")
    return [recipes[n] for n in recipes if n in names]


def overrides_for(recipe: Recipe, scale: str, common: Sequence[str], data_dir: str,
                  extra: Sequence[str] = ()) -> List[str]:
    """The ``--set`` list of a recipe at ``scale``: cpu = common + the recipe's + the command line's;
    paper = the command line's only."""
    if scale not in SCALES:
        raise UserError(f"--scale {scale!r}: expected one of {', '.join(SCALES)}")
    if scale == "paper":
        return list(extra)
    return [o.replace("{data_dir}", data_dir) for o in [*common, *recipe.cpu]] + list(extra)


def resolve_config(recipe: Recipe, overrides: Sequence[str], warn: bool = True) -> ExperimentConfig:
    """The recipe's config with ``overrides``; a mistake names the recipe."""
    try:
        return load_config(recipe.config_path(), overrides, warn=warn)
    except ConfigError as e:
        raise ConfigError(f"zoo recipe {recipe.name}: {e}") from None


# --------------------------------------------------------------------------------------------------
# --scale paper: what is missing on this machine
# --------------------------------------------------------------------------------------------------

KERAS_WEIGHT_FILES = {"resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                      "resnet101": "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
                      "resnet50v2": "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
                      "densenet169": "densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5"}


def _keras_cache() -> str:
    return os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")


def _hf_cached(repo_id: str) -> bool:
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
    folder = os.path.join(hub, "models--" + repo_id.replace("/", "--"), "snapshots")
    return bool(glob.glob(os.path.join(folder, "*", "model.safetensors")))


def paper_missing(recipe: Recipe, cfg: ExperimentConfig) -> List[str]:
    """One line per thing the recipe's own config needs that this machine does not hold (its dataset,
    encoder weights, the checkpoint it starts from). Nothing is downloaded or built to find out."""
    out = []
    data = cfg.data
    if data.dataset == "tfrecord" and not os.path.isfile(os.path.join(data.data_dir, "manifest.json")):
        out.append(f"{recipe.name}: dataset {data.data_dir}/manifest.json is missing (data.data_dir of {recipe.config};"
                   f" convert it first: python -m tfdepth.convert ...)")
    weights = str(cfg.model.encoder_weights).strip()
    if weights.lower() == "imagenet":
        fname = KERAS_WEIGHT_FILES.get(cfg.model.encoder)
        if fname and not os.path.isfile(os.path.join(_keras_cache(), fname)):
            out.append(f"{recipe.name}: ImageNet weights of {cfg.model.encoder} are not cached "
                       f"({os.path.join(_keras_cache(), fname)}; keras downloads them where a network is reachable)")
    elif weights.lower() != "none" and not os.path.isfile(weights):
        out.append(f"{recipe.name}: model.encoder_weights {weights} is missing (see the comment in {recipe.config})")
    spec = cfg.model.init_from
    if spec:
        if spec.startswith("hf:"):
            target = spec[3:]
            if not os.path.isdir(target) and not _hf_cached(target):
                out.append(f"{recipe.name}: model.init_from {spec} is not in the Hugging Face cache (downloaded where "
                           f"a network is reachable, or give hf:DIR)")
        elif spec.startswith("keras_hub:"):
            out.append(f"{recipe.name}: model.init_from {spec} is a keras-hub preset (Kaggle download; not checked "
                       f"offline: run where a network is reachable)")
        elif not os.path.exists(spec):
            out.append(f"{recipe.name}: model.init_from {spec} does not exist")
    return out


def paper_row(papers: Dict[str, dict], recipe: Recipe) -> Optional[dict]:
    entry = papers.get(recipe.paper)
    if entry is None:
        return None
    return {k: entry[k] for k in PAPER_KEYS}
