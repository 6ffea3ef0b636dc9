"""Training: the reward training models (task loss + complexity and distillation terms), the
trainer, its callbacks, resume and Ctrl-C handling."""
