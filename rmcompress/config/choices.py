"""Allowed values shared by the CLI and the library (no heavy imports here: the CLI reads these
before TensorFlow is imported, so its log noise can be silenced first)."""
TASKS = ("pointwise", "pairwise")
#: the settings naming a data table's columns, by the task whose loader reads them (``--...-column``)
TASK_COLUMNS = {"pointwise": ("text_column", "label_column"),
                "pairwise": ("prompt_column", "chosen_column", "rejected_column")}
COLUMN_SETTINGS = TASK_COLUMNS["pointwise"] + TASK_COLUMNS["pairwise"]
ARCHITECTURES = ("transformer", "cnn", "bow", "bert")
#: ``int4``: 4-bit Dense/EinsumDense weights and embedding tables, float activations (rmcompress.runtime.int4)
QUANTIZE_MODES = ("none", "float16", "dynamic", "int4", "int8", "int16x8")
EXPORT_FORMATS = ("savedmodel", "tflite")
POINTWISE_LOSSES = ("bce", "mse", "mae")
KEEP_SIDES = ("start", "end")
#: how validation rows are split off a data file (rmcompress.data.split)
SPLIT_MODES = ("auto", "random", "disjoint", "sentences", "hash")
#: the split modes that need every row in memory (not possible on streamed data)
IN_MEMORY_SPLIT_MODES = ("random", "disjoint", "sentences")
DISTILL_LOSSES = ("mse", "ce")
#: ``train --strategy``: how training is distributed (rmcompress.training.strategy)
STRATEGIES = ("auto", "none", "mirrored", "multiworker")
TOKENIZER_MODES = ("wordpiece", "bert")
#: how the ``budget`` pass reaches its budget: gated training, or importance pruning + fine-tuning
BUDGET_METHODS = ("gates", "taylor", "magnitude")
#: how gated budget training from a trained model starts its gates: all alike, or ranked by importance
GATE_INITS = ("uniform", "magnitude", "taylor")
#: architectures that take ``head_hidden`` (a ReLU layer between the pooling and the reward)
HEAD_HIDDEN_ARCHS = ("transformer", "cnn")

#: default schedule of a gated run by how its gates start: ``(gate_init_spread, finetune_fraction)``.
#: Uniform gates need a long gated phase to find the units; gates started in importance order
#: already know them, and every gated (noisy) step then costs accuracy that fine-tuning at the final
#: size does not: on SST-2 (8,000 rows, 250 steps, 3 seeds) the ranked start with 80% of the steps
#: fine-tuning beat 60% at every budget of the cnn and at 50%/2% of the transformer
#: (docs/complexity.md, "Gates started in magnitude order").
GATE_SCHEDULES = {"uniform": (2.0, 0.3), "magnitude": (4.0, 0.8), "taylor": (4.0, 0.8)}


def gate_schedule(gate_init: str, spread: float | None = None,
                  finetune_fraction: float | None = None) -> tuple[float, float]:
    """``(spread, finetune_fraction)`` for ``gate_init``: the values given, else its defaults."""
    default_spread, default_fraction = GATE_SCHEDULES.get(gate_init, GATE_SCHEDULES["uniform"])
    return (float(default_spread if spread is None else spread),
            float(default_fraction if finetune_fraction is None else finetune_fraction))

#: ``rmcompress search``: objectives, precisions, the default space and schedule
SEARCH_OBJECTIVES = ("latency", "size", "flops", "reward")
SEARCH_PRECISIONS = ("float16", "dynamic", "int8", "int4", "qat")
SEARCH_SPACE = {"budgets": (1.0, 0.5, 0.25, 0.1), "factorise": (False, True), "sparsity": (0.0, 0.5),
                "precisions": ("dynamic", "int8", "qat"), "levels": ("light", "medium", "aggressive")}
SEARCH_DEFAULTS = {"max_drop": 0.5, "objective": "latency", "reward_gamma": 0.01, "eta": 3, "rungs": 2,
                   "latency_runs": 200, "margin_z": 1.0, "promote_z": 2.0}
#: ``rmcompress sensitivity``: validation rows scored per variant, training rows calibrating int8
SENSITIVITY_DEFAULTS = {"max_examples": 1000, "calibration_samples": 200}
