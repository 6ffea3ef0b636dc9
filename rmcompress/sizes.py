"""Artifact sizes: raw bytes and gzip-compressed bytes (what a download or an app bundle costs).

For a directory, both are summed over its files (each file gzipped on its own, level 9).
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path


def _files(path: Path):
    if path.is_file():
        yield path
    else:
        for root, _, names in os.walk(path):
            for n in sorted(names):
                yield Path(root) / n


def file_sizes(path: str | os.PathLike) -> dict:
    """``{"size_bytes": raw, "size_gzip_bytes": gzipped}`` of a file or directory."""
    raw = gz = 0
    for f in _files(Path(path)):
        data = f.read_bytes()
        raw += len(data)
        gz += len(gzip.compress(data, compresslevel=9, mtime=0))
    return {"size_bytes": raw, "size_gzip_bytes": gz}
