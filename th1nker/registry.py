"""The block registry: recipe kinds -> config models (no torch) and -> Block classes (imported on demand).

Built-in kinds are listed in `th1nker.blocks.configs.BUILTIN`; their classes are imported only when a
model is built, so validating a recipe never imports torch. `@register("kind")` binds a Block class
to its kind; a third-party package adds blocks through the entry-point group `th1nker.blocks` (each
entry point is imported once, when the kinds are first listed).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Literal

from pydantic import Field, create_model

from th1nker.errors import RecipeError
from th1nker.schema import BlockConfig, unknown_name_message

if TYPE_CHECKING:
    from th1nker.blocks.base import Block

_CONFIGS: dict[str, type[BlockConfig]] = {}   # kind -> config with `kind` pinned to a literal
_CLASSES: dict[str, str | type["Block"]] = {}  # kind -> "module:Class" until imported, then the class
_plugins_loaded = False


def _pin(kind: str, base: type[BlockConfig], doc: str) -> type[BlockConfig]:
    """`base` with its `kind` field pinned to `kind`, so recipes validate as a discriminated union."""
    return create_model(f"{base.__name__.removesuffix('Config')}{kind.title().replace('_', '')}Config",
                        __base__=base, __doc__=doc, kind=(Literal[kind], Field(description="block kind")))


def register(kind: str):
    """Class decorator: register a Block subclass under `kind` (its `Config`, or the built-in config)."""

    def wrap(cls):
        _load()
        if kind not in _CONFIGS or not _is_builtin(kind):
            base = cls.__dict__.get("Config") or getattr(cls, "Config", BlockConfig)
            doc = (cls.__doc__ or kind).strip().splitlines()[0]
            _CONFIGS[kind] = _pin(kind, base, doc)
        cls.Config = _CONFIGS[kind]
        cls.kind = kind
        _CLASSES[kind] = cls
        return cls

    return wrap


def _is_builtin(kind: str) -> bool:
    from th1nker.blocks.configs import BUILTIN

    return kind in BUILTIN


def _load() -> None:
    """Register the built-in configs (no torch) and, once, the plugins' blocks."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from th1nker.blocks.configs import BUILTIN

    for kind, (config, target) in BUILTIN.items():
        _CONFIGS.setdefault(kind, _pin(kind, config, config.__doc__ or kind))
        _CLASSES.setdefault(kind, target)
    for ep in entry_points(group="th1nker.blocks"):
        try:
            ep.load()
        except Exception as e:  # a broken plugin must not take the framework down
            import warnings

            warnings.warn(f"th1nker.blocks plugin {ep.name!r} ({ep.value}) failed to load: {e}", stacklevel=2)


def kinds() -> list[str]:
    """Every registered block kind, sorted."""
    _load()
    return sorted(_CONFIGS)


def config_class(kind: str) -> type[BlockConfig]:
    """The recipe model of a block kind (imports no torch for built-in kinds)."""
    _load()
    if kind not in _CONFIGS:
        raise RecipeError(unknown_name_message("block kind", kind, _CONFIGS))
    return _CONFIGS[kind]


def block_class(kind: str) -> type["Block"]:
    """The Block class of a kind (imports its module on first use)."""
    config_class(kind)
    target = _CLASSES[kind]
    if isinstance(target, str):
        module, name = target.split(":")
        getattr(import_module(module), name)  # importing runs @register, which stores the class
        target = _CLASSES[kind]
    return target
