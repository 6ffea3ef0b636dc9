"""Allowed values shared by the CLI and the library (no heavy imports here: the CLI reads these
before TensorFlow is imported, so its log noise can be silenced first)."""
TASKS = ("pointwise", "pairwise")
ARCHITECTURES = ("transformer", "cnn", "bow", "bert")
QUANTIZE_MODES = ("none", "float16", "dynamic", "int8", "int16x8")
EXPORT_FORMATS = ("savedmodel", "tflite")
POINTWISE_LOSSES = ("bce", "mse", "mae")
KEEP_SIDES = ("start", "end")
DISTILL_LOSSES = ("mse", "ce")
TOKENIZER_MODES = ("wordpiece", "bert")
#: how the ``budget`` pass reaches its budget: gated training, or importance pruning + fine-tuning
BUDGET_METHODS = ("gates", "taylor", "magnitude")
#: how gated budget training from a trained model starts its gates: all alike, or ranked by importance
GATE_INITS = ("uniform", "magnitude", "taylor")
