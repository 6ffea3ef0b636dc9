"""Configuration: the allowed choices of every setting and the validation of settings files."""
