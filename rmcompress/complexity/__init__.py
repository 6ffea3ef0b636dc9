"""FLOPs and parameter counting (the registry of per-layer facts), gates, shrinking, budgets.

``count`` and ``ComplexityReport`` are imported eagerly; ``shrink``, ``budget_compress`` and
``gated_copy`` on first use (they pull in the architectures and training modules).
"""
from rmcompress.complexity.registry import ComplexityReport, count

__all__ = ["count", "ComplexityReport", "shrink", "budget_compress", "gated_copy"]


def __getattr__(name):
    if name == "shrink":
        from rmcompress.complexity.shrink import shrink

        return shrink
    if name == "budget_compress":
        from rmcompress.complexity.api import budget_compress

        return budget_compress
    if name == "gated_copy":
        from rmcompress.complexity.gates import gated_copy

        return gated_copy
    raise AttributeError(f"module 'rmcompress.complexity' has no attribute {name!r}")
