"""Settings of the library: each setting's default, CLI flag, help text and allowed values in one
place (dataclass fields with ``metadata``), read by the CLI and the Python API alike."""
