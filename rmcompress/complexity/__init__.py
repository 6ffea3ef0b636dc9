"""FLOPs and parameter counting (the registry of per-layer facts)."""
from rmcompress.complexity.registry import ComplexityReport, count

__all__ = ["count", "ComplexityReport"]
