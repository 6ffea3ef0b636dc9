"""rmcompress: train, shrink, compress and export reward models for edge devices."""
__version__ = "0.1.0"
