"""Name -> thing registries whose names are known without importing what they name.

A :class:`Registry` holds, for one concept (encoders, losses, optimisers, ...), entries that map a
name to a *target*, a one-line description and optional metadata. A target is either a plain object
or a lazy reference ``"package.module:attr"`` (``attr`` may be dotted; ``attr[key]`` picks an item
of a mapping; ``"package.module"`` alone is the module), imported only by :meth:`Registry.get`. So
the config can be checked against every registry before TensorFlow is imported, and nothing
registers itself by being imported. Every registry of the project is declared in
``tfdepth/registries.py`` (the catalogue)::

    LOSSES = Registry("loss", "loss terms of the training objective")
    LOSSES.add("l1", "tfdepth.losses:l1_loss", "masked mean |d - g| in metres", input="depth")
    LOSSES.get("l1")            # imports tfdepth.losses, returns l1_loss
    LOSSES.meta("l1")["input"]  # "depth", no import
    LOSSES.parameters("l1")     # {"max_depth_m": None}: the factory's keyword parameters, read with ast

An unknown name raises :class:`UnknownNameError` (a ``ConfigError`` and a ``KeyError``) naming the
kind, the name and the allowed names.
"""

from __future__ import annotations

import ast
import importlib
import re
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

from tfdepth.errors import ConfigError

_PACKAGE_DIR = Path(__file__).resolve().parent
_ITEM = re.compile(r"^(?P<attr>[\w.]+)\[(?P<key>[^\]]+)\]$")


class UnknownNameError(ConfigError, KeyError):
    """A name that is not in a registry; the message lists the allowed names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Entry:
    """One registered name: ``target`` (object or ``"module:attr"``), description, metadata."""

    name: str
    target: Any
    description: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def lazy(self) -> bool:
        return isinstance(self.target, str)


class Registry:
    """The names of one concept, each with its target, a one-line description and metadata."""

    def __init__(self, kind: str, description: str):
        self.kind = kind
        self.description = description
        self._entries: Dict[str, Entry] = {}
        self._resolved: Dict[str, Any] = {}

    # --- declaring ------------------------------------------------------------------------------

    def add(self, name: str, target: Any, description: str, **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if not description or "\n" in description:
            raise ValueError(f"{self.kind} {name!r}: the description must be one line")
        self._entries[name] = Entry(name, target, description, dict(meta))

    # --- looking up (no imports) ----------------------------------------------------------------

    def names(self) -> List[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}") from None

    def meta(self, name: str) -> Mapping[str, Any]:
        return self.entry(name).meta

    def check(self, name: Any, key: str) -> None:
        """ConfigError naming the config ``key``, the value and the allowed names unless ``name`` is known."""
        if not isinstance(name, str) or name not in self._entries:
            raise ConfigError(f"{key}: unknown {self.kind} {name!r}; allowed: {', '.join(self.names())}")

    # --- resolving (imports the target) ---------------------------------------------------------

    def get(self, name: str) -> Any:
        """The registered object, importing its module on first use."""
        entry = self.entry(name)
        if not entry.lazy:
            return entry.target
        if name not in self._resolved:
            self._resolved[name] = resolve(entry.target)
        return self._resolved[name]

    def parameters(self, name: str) -> Optional[Dict[str, Any]]:
        """Keyword parameters of a lazy function target -> default (``inspect.Parameter.empty`` when
        required, ``...`` when not a literal), read from the module's source without importing it.

        None when the target is not a ``def`` of a tfdepth module (then nothing can be said before import).
        """
        entry = self.entry(name)
        if not entry.lazy or ":" not in entry.target:
            return None
        module, attr = entry.target.split(":", 1)
        params = _function_parameters(module, attr)
        return None if params is None else dict(params)


def resolve(target: str) -> Any:
    """``"pkg.module"`` -> the module; ``"pkg.module:a.b"`` -> its attribute; ``"...:a[key]"`` -> ``a[key]``."""
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    if not attr:
        return obj
    key = None
    match = _ITEM.match(attr)
    if match:
        attr, key = match.group("attr"), match.group("key")
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj if key is None else obj[key]


@lru_cache(maxsize=None)
def _function_parameters(module: str, attr: str) -> Optional[Dict[str, Any]]:
    import inspect

    if not module.startswith("tfdepth.") or "." in attr or "[" in attr:
        return None
    parts = module.split(".")[1:]
    path = _PACKAGE_DIR.joinpath(*parts).with_suffix(".py")
    if not path.is_file():
        path = _PACKAGE_DIR.joinpath(*parts, "__init__.py")
    if not path.is_file():
        return None
    tree = ast.parse(path.read_text(), str(path))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == attr:
            args = node.args
            positional = args.posonlyargs + args.args
            defaults = [inspect.Parameter.empty] * (len(positional) - len(args.defaults)) + list(args.defaults)
            params = dict(zip([a.arg for a in positional], defaults))
            params.update({a.arg: (d if d is not None else inspect.Parameter.empty)
                           for a, d in zip(args.kwonlyargs, args.kw_defaults)})
            out = {}
            for key, default in params.items():
                if default is inspect.Parameter.empty:
                    out[key] = default
                    continue
                try:
                    out[key] = ast.literal_eval(default)
                except ValueError:
                    out[key] = ...
            if args.vararg or args.kwarg:
                return None  # takes anything: nothing to check
            return out
    return None
