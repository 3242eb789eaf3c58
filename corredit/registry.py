"""Named registries: the one extension mechanism for editors, embedders, schedulers,
datasets and architectures.

Usage::

    from corredit.registry import Registry
    SCHEDULERS = Registry("scheduler")

    @SCHEDULERS.register("random")
    def random_schedule(...): ...

    SCHEDULERS.get("random")        # the function
    SCHEDULERS.names()              # ['random']

    # an entry living in a later package, imported on first use (keeps dependencies one-way)
    EMBEDDERS.provide("editor_key", "corredit.editors.key_embedding")
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterator, TypeVar

__all__ = ["Registry", "UnknownNameError"]

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no entry of the registry answers to."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping from names to objects, filled by the :meth:`register` decorator."""

    def __init__(self, kind: str, *, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint
        self._entries: dict[str, T] = {}
        self._providers: dict[str, str] = {}

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator registering an object under ``name``; refuses a second entry
        of the same name unless ``replace=True``."""

        def decorate(obj: T) -> T:
            self.add(name, obj, replace=replace)
            return obj

        return decorate

    def add(self, name: str, obj: T, *, replace: bool = False) -> None:
        """Register ``obj`` under ``name`` (the non-decorator form)."""
        if not replace and name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"a {self.kind} named {name!r} is already registered")
        self._entries[name] = obj

    def provide(self, name: str, module: str) -> None:
        """Declare that importing ``module`` registers ``name``: the module is imported the
        first time ``name`` is asked for (an entry defined in a package that depends on
        this one, without an import in the other direction)."""
        self._providers[name] = module

    def get(self, name: str) -> T:
        """The object registered as ``name``; the error lists the known names."""
        if name not in self._entries and name in self._providers:
            importlib.import_module(self._providers[name])
            if name not in self._entries:
                raise RuntimeError(f"module {self._providers[name]!r} was to register the "
                                   f"{self.kind} {name!r} but did not")
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none)"
            msg = f"unknown {self.kind} {name!r}; known: {known}"
            if self.hint:
                msg += f". {self.hint}"
            raise UnknownNameError(msg) from None

    def names(self) -> list[str]:
        """Registered names (with those a provider will register), sorted."""
        return sorted(set(self._entries) | set(self._providers))

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._providers

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
