"""A corpus of real text written by people, made offline: the Python standard library's own .py sources.

The files of the running interpreter's stdlib (site-packages and test folders left out) are taken in
an order fixed by the hash of their relative path; the hash of its path sends a file to the train or the
held-out split, which take files while they fit their share of `max_bytes`. So the split is by file and
the same on every machine with the same Python. `manifest.json` records the Python version, the files of each split and the outputs' sha256.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from pathlib import Path

from th1nker.errors import DataError
from th1nker.io import atomic_write_json, atomic_write_text, sha256

SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
SPLITS = ("train.txt", "held_out.txt")


def _key(rel: str) -> int:
    return int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "big")


def stdlib_files(root: Path | None = None) -> list[tuple[str, Path]]:
    """(relative path, path) of the stdlib's .py files, in the corpus's fixed order."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    files = [(p.relative_to(root).as_posix(), p) for p in root.rglob("*.py")
             if not SKIP_DIRS & set(p.relative_to(root).parts[:-1])]
    return sorted(files, key=lambda f: (_key(f[0]), f[0]))


def build_code_corpus(out: Path, max_bytes: int = 8_000_000, held_out_percent: int = 10,
                      root: Path | None = None) -> dict:
    """Write out/train.txt, out/held_out.txt (the files joined, each opened by a `# file: PATH` line)
    and out/manifest.json; returns the manifest."""
    texts: dict[str, list[str]] = {s: [] for s in SPLITS}
    names: dict[str, list[str]] = {s: [] for s in SPLITS}
    room = {SPLITS[0]: max_bytes * (100 - held_out_percent) // 100, SPLITS[1]: max_bytes * held_out_percent // 100}
    for rel, path in stdlib_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a few stdlib files are latin-1 test data; the corpus is UTF-8 only
        split = SPLITS[1] if _key(rel + "#split") % 100 < held_out_percent else SPLITS[0]
        if len(text.encode()) > room[split]:
            continue
        texts[split].append(f"# file: {rel}\n{text}")
        names[split].append(rel)
        room[split] -= len(text.encode())
    if not names[SPLITS[0]] or not names[SPLITS[1]]:
        raise DataError(f"{root or 'the stdlib'}: too few .py files for a train and a held-out split; "
                        "raise --max-bytes or point --root at a folder of Python sources")
    out = Path(out)
    manifest = {"source": "python stdlib .py files", "python": sys.version.split()[0], "max_bytes": max_bytes,
                "held_out_percent": held_out_percent, "splits": {}}
    for split in SPLITS:
        atomic_write_text(out / split, "\n".join(texts[split]))
        manifest["splits"][split] = {"files": names[split], "bytes": (out / split).stat().st_size,
                                     "sha256": sha256(out / split)}
    atomic_write_json(out / "manifest.json", manifest)
    return manifest
