"""The registry of per-layer facts: FLOPs, params and prunable roles of every layer type."""
