"""Name -> factory registries (models, converters, exit policies, data sets).

Modelled on timm's ``@register_model``: an unknown name lists the known ones::

    Unknown policy 'conf'. Known: dynamic_confidence, fixed, oracle
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from snnexit.errors import SnnexitError

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, F] = {}

    def register(self, name: str | None = None) -> Callable[[F], F]:
        def decorator(fn: F) -> F:
            key = name or fn.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = fn
            return fn

        return decorator

    def get(self, name: str) -> F:
        if not isinstance(name, str) or name not in self._entries:
            raise SnnexitError(f"Unknown {self.kind} {name!r}. Known: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return isinstance(name, str) and name in self._entries

    def create(self, name: str, *args, **kwargs):
        return self.get(name)(*args, **kwargs)
