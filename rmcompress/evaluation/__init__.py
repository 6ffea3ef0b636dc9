"""Evaluation: quality, size, FLOPs, params and latency of any artifact; report tables and plots."""
