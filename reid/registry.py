"""One registry mechanism for data sets, backbones, layers, models and losses.

A registry maps a name to a callable (a class or a factory function). Configs name components;
``Registry.build(section)`` checks the section's keys against the callable's signature (so a
mistyped key is an error that suggests the right one) and calls it.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType
from typing import Any, Callable, Iterable

from .suggest import closest, suggestion  # noqa: F401  (re-exported: the names' old home)


class UserError(Exception):
    """An error caused by the user's input (config, data on disk, files); CLIs print it plainly."""


class ConfigError(UserError, ValueError):
    """A user error in a configuration: unknown key, wrong type, unknown component name."""


class Registry:
    """Name -> callable mapping with signature-checked construction."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable], Callable]:
        """Decorator: ``@MODELS.register("bot")``; the name defaults to the object's name."""

        def deco(obj: Callable) -> Callable:
            key = name or obj.__name__
            if key in self._items and self._items[key] is not obj:
                raise KeyError(f"{self.kind} '{key}' is registered twice")
            self._items[key] = obj
            return obj

        return deco

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} '{name}'{suggestion(name, self._items)}")
        return self._items[name]

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """The keyword parameters a config section may set for component ``name``."""
        fn = self.get(name)
        target = fn.__init__ if inspect.isclass(fn) else fn
        params = inspect.signature(target).parameters
        return {
            k: p
            for k, p in params.items()
            if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def defaults(self, name: str) -> dict[str, Any]:
        """Default keyword values of component ``name`` (parameters without one are omitted)."""
        return {
            k: p.default for k, p in self.parameters(name).items() if p.default is not p.empty
        }

    def check_kwargs(self, name: str, kwargs: dict[str, Any], where: str = "") -> None:
        """Raise ConfigError for an unknown keyword, naming the closest valid one, or for a value
        its signature refuses (type, ``Literal`` choice, ``Annotated[int, Range(1)]``: reid.checks)."""
        from reid.checks import keyword_problem

        params = self.parameters(name)
        prefix = f"{where}: " if where else ""
        module = inspect.getmodule(self.get(name))
        namespace = vars(module) if module is not None else {}
        for key, value in kwargs.items():
            if key not in params:
                raise ConfigError(
                    f"{prefix}unknown key '{key}' for {self.kind} '{name}'"
                    f"{suggestion(key, params)}"
                )
            default = None if params[key].default is params[key].empty else params[key].default
            message = keyword_problem(key, value, params[key].annotation, default, namespace)
            if message:
                raise ConfigError(f"{prefix}{message}")

    def build(self, name: str, *args: Any, where: str = "", **kwargs: Any) -> Any:
        """Check ``kwargs`` against the signature of ``name`` and call it."""
        self.check_kwargs(name, kwargs, where)
        return self.get(name)(*args, **kwargs)


def import_submodules(package: str, path: Iterable[str], skip: Iterable[str] = ()) -> list[ModuleType]:
    """Import every module and subpackage of ``package`` (its ``__path__`` is ``path``) whose name
    does not start with ``_``, in name order, except ``skip``: the one registration mechanism.
    A package's ``__init__`` calls ``import_submodules(__name__, __path__)``, so a new file in it
    registers its components (``@MODELS.register(...)``) without being added to an import list.
    Returns the modules imported."""
    skipped = set(skip)
    return [importlib.import_module(f"{package}.{info.name}")
            for info in sorted(pkgutil.iter_modules(list(path)), key=lambda m: m.name)
            if not info.name.startswith("_") and info.name not in skipped]


DATASETS = Registry("dataset")
BACKBONES = Registry("backbone")
LAYERS = Registry("layer")
MODELS = Registry("model")
LOSSES = Registry("loss")
HEADS = Registry("head")
POOLINGS = Registry("pooling")
