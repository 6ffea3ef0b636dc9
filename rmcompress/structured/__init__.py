"""Structural model transformations that do not train: gated copies, shrinking, unit importance
from weights and the selection of units to a budget."""
