"""Configuration: every setting's default, CLI flag, help text and allowed values in one place
(the training settings as dataclass fields with ``metadata``, read by the CLI and the Python API
alike), the allowed choices, and the validation of settings files."""
