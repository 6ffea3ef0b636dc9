"""Compression recipes: ordered passes (budget, fuse, factorise, prune, cluster, quantise, length)
ending in a checked, measured export. ``from rmcompress.compress import compress, Recipe``.

Importing the package is cheap (no TensorFlow); :func:`compress` loads the pipeline on first use.
"""
from rmcompress.compress.recipe import LEVELS, Recipe, RecipeError

__all__ = ["compress", "Recipe", "RecipeError", "LEVELS"]


def compress(*args, **kwargs):
    """See :func:`rmcompress.compress.pipeline.compress`."""
    from rmcompress.compress.pipeline import compress as _compress

    return _compress(*args, **kwargs)
