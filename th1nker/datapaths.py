"""Paths named inside data files (media lists, speech listings, memory manifests) stay in the data's folder.

A data file may name only files in its own folder (or below it): a path that leads elsewhere (`../..`, an
absolute path, a symlink out) is a DataError, unless the user sets TH1NKER_ALLOW_OUTSIDE_PATHS=1.
"""

from __future__ import annotations

import os
from pathlib import Path

from th1nker.errors import DataError

ALLOW_OUTSIDE = "TH1NKER_ALLOW_OUTSIDE_PATHS"


def inside(folder: Path, name: str, where: str) -> Path:
    """`folder / name` resolved (symlinks followed); a DataError naming `where` (the data file and its line
    or entry) when it leads outside `folder` and TH1NKER_ALLOW_OUTSIDE_PATHS=1 is not set."""
    path = (folder / name).resolve()
    if path.is_relative_to(folder.resolve()) or os.environ.get(ALLOW_OUTSIDE) == "1":
        return path
    raise DataError(f"{where}: {name!r} leads outside {folder} (to {path}); a data file may name only files in "
                    f"its own folder: move the file there, or set {ALLOW_OUTSIDE}=1 to allow paths outside it")
