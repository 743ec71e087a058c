"""Name -> factory registries: encoders, decoders, losses and schedules are picked by name from config."""

from __future__ import annotations

from typing import Callable, Dict, Iterator


class Registry:
    """A named mapping of factories with errors that list the allowed names.

    Usage::

        ENCODERS = Registry("encoder")

        @ENCODERS.register("resnet34")
        def resnet34(...): ...

        ENCODERS.get("resnet34")
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[Callable], Callable]:
        def decorator(fn: Callable) -> Callable:
            if name in self._items and self._items[name] is not fn:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = fn
            return fn

        return decorator

    def get(self, name: str) -> Callable:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; allowed: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
