"""The converter registry: dataset name -> Converter class, filled by `@register_converter`."""

from __future__ import annotations

import importlib

from refine_cli.data.convert.base import Converter
from refine_cli.errors import RefineError

_REGISTRY: dict[str, type[Converter]] = {}

# Shipped converter modules, imported on first lookup so importing the registry stays cheap.
# A module that does not exist (yet) is skipped, so one missing converter never breaks the others.
_BUILTIN_MODULES = (
    *(
        f"refine_cli.data.convert.datasets.{name}"
        for name in ("voc", "sbd", "coco", "person_part", "context", "nyudv2", "sunrgbd", "ade20k", "cityscapes")
    ),
    "refine_cli.data.convert.custom.converter",
)
_LOADED = {"done": False}


def register_converter(cls: type[Converter]) -> type[Converter]:
    """Class decorator: make a converter available under its `name`."""
    if not getattr(cls, "name", ""):
        raise ValueError(f"converter {cls.__qualname__} has no name")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"converter name {cls.name!r} is already registered by {existing.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    if _LOADED["done"]:
        return
    _LOADED["done"] = True
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


def list_converters() -> list[str]:
    """Names of all registered converters, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_converter(name: str) -> Converter:
    """A fresh instance of the converter called `name`; RefineError listing the valid names otherwise."""
    _load_builtins()
    cls = _REGISTRY.get(name)
    if cls is None:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise RefineError(f"unknown dataset converter {name!r}", hint=f"known converters: {known}")
    return cls()
