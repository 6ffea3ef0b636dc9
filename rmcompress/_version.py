"""The package version (one source: setup.cfg reads it, model directories record it)."""
__version__ = "0.1.0"
