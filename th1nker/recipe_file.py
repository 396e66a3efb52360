"""Reading a recipe file: one clear RecipeError for a file that is not UTF-8 YAML text or names a key twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from th1nker.errors import RecipeError


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names the same key twice."""

    def __init__(self, key: Any, line: int, first_line: int):
        super().__init__(f"key {key!r} on line {line} repeats line {first_line}")
        self.key, self.line, self.first_line = key, line, first_line


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (a merge `<<:` may still be overridden)."""

    def construct_mapping(self, node, deep=False):
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in lines:
                    raise DuplicateKeyError(key, line, lines[key])
            except TypeError:  # an unhashable key: the SafeLoader reports it below
                continue
            lines[key] = line
        return super().construct_mapping(node, deep)


def read_text(path: Path) -> str:
    """A recipe file's text; a RecipeError naming what is wrong for a folder, binary data or non-UTF-8 bytes."""
    if path.is_dir():
        raise RecipeError(f"{path}: a folder, not a recipe file; pass one of the .yaml files in it")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError(f"{path}: file not found") from None
    except OSError as e:
        raise RecipeError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None
    nul = raw.find(b"\0")
    if nul >= 0:
        raise RecipeError(f"{path}: binary data (a NUL byte at offset {nul}), not a YAML recipe; "
                          "pass the recipe's .yaml file, saved as UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path}: not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start}); "
                          "save the recipe as UTF-8") from None


def load_yaml(path: Path) -> Any:
    """The YAML document in a recipe file, read strictly (see `read_text`, `StrictLoader`)."""
    try:
        return yaml.load(read_text(path), Loader=StrictLoader)
    except DuplicateKeyError as e:
        raise RecipeError(f"{path}: line {e.line}: key '{e.key}' is given twice in one mapping (first on line "
                          f"{e.first_line}); keep one of them") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
