"""Compression recipes: ordered passes (budget, attention, fuse, factorise, prune, cluster, quantise, length)
ending in a checked, measured export: :func:`rmcompress.compression.pipeline.compress` with a
:class:`rmcompress.compression.recipe.Recipe` (both also at the package root,
``from rmcompress import compress, Recipe``)."""
