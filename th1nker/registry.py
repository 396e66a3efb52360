"""The block registry: `@register("kind")` makes a Block class usable from recipes.

Each Block class carries a pydantic `Config` (a subclass of `BlockConfig`); registering pins its
`kind` field to a literal so recipes validate as a discriminated union. Third-party packages add
blocks through the entry-point group `th1nker.blocks` (each entry point is imported once).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Literal

from pydantic import Field, create_model

from th1nker.errors import RecipeError
from th1nker.recipe import BlockConfig, unknown_name_message

if TYPE_CHECKING:
    from th1nker.blocks.base import Block

_BLOCKS: dict[str, type["Block"]] = {}
_plugins_loaded = False


def register(kind: str):
    """Class decorator: register a Block subclass under `kind`."""

    def wrap(cls):
        base = cls.__dict__.get("Config") or getattr(cls, "Config", BlockConfig)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else kind
        cls.Config = create_model(
            f"{cls.__name__}Config", __base__=base, __doc__=doc,
            kind=(Literal[kind], Field(description="block kind")),
        )
        cls.kind = kind
        _BLOCKS[kind] = cls
        return cls

    return wrap


def _load_builtins_and_plugins() -> None:
    global _plugins_loaded
    import th1nker.blocks  # noqa: F401  (registers the built-in blocks)

    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group="th1nker.blocks"):
        try:
            ep.load()
        except Exception as e:  # a broken plugin must not take the framework down
            import warnings

            warnings.warn(f"th1nker.blocks plugin {ep.name!r} ({ep.value}) failed to load: {e}", stacklevel=2)


def kinds() -> list[str]:
    """Every registered block kind, sorted."""
    _load_builtins_and_plugins()
    return sorted(_BLOCKS)


def block_class(kind: str) -> type["Block"]:
    _load_builtins_and_plugins()
    if kind not in _BLOCKS:
        raise RecipeError(unknown_name_message("block kind", kind, _BLOCKS))
    return _BLOCKS[kind]


def config_class(kind: str) -> type[BlockConfig]:
    return block_class(kind).Config
