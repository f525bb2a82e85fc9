"""A tiny decorator registry: back-ends (sources, runtimes, sinks) registered under string keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from edge_fer.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a key to a factory; an unknown key raises a `ConfigError` listing the known keys.

    Args:
        kind: what is registered, for error messages (e.g. ``"frame source"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, key: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._items[key] = item
            return item

        return decorator

    def get(self, key: str) -> T:
        try:
            return self._items[key]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise ConfigError(f"unknown {self.kind} {key!r}; known: {known}") from None

    def keys(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
