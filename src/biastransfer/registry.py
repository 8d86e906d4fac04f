"""A tiny named registry used by every stage (datasets, architectures, bases, interventions, experiments...)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised when a name is not registered; the message lists what is."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to registered objects (usually classes).

    >>> r = Registry[type]("colour")
    >>> @r.register("red")
    ... class Red: ...
    >>> r.get("red") is Red
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            with contextlib.suppress(AttributeError, TypeError):
                obj.registry_name = name  # type: ignore[attr-defined]
            return obj

        return decorator

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return what it held (a test's throwaway entry); an unknown name is an error."""
        self.get(name)
        return self._entries.pop(name)

    @contextlib.contextmanager
    def restored(self) -> Iterator[Registry[T]]:
        """The entries as they are now come back when the block ends: whatever it registered is removed, and
        whatever it unregistered returns (tests that register throwaway entries)."""
        before = dict(self._entries)
        try:
            yield self
        finally:
            self._entries.clear()
            self._entries.update(before)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; allowed: {', '.join(sorted(self._entries))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())


def make_registered(registry: Registry[Any], name: str, options: dict[str, Any]) -> Any:
    """Instantiate ``registry.get(name)`` (a class with ``option_names()``, e.g. a pydantic model whose fields are
    its typed options) with ``options``; an unknown name raises :class:`UnknownNameError` listing the registered
    ones, unknown or invalid options a ValueError naming the option and the allowed ones."""
    cls = registry.get(name)
    allowed = cls.option_names()
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{registry.kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(allowed) if allowed else '(none)'}")
    try:
        return cls(**options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) + ': ' if e['loc'] else ''}"
                             f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise ValueError(f"{registry.kind} {name!r}: {problems}") from None
