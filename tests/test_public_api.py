"""``from rmcompress import X`` gives the documented callable for every public name, also after
every subpackage is imported (a subpackage named like a function would shadow it)."""
import importlib
import subprocess
import sys

import pytest

import rmcompress

PUBLIC = ["TrainConfig", "train", "ArchConfig", "build_reward_model", "from_keras", "import_model",
          "load_model_dir", "save_model_dir",
          "RewardTrainingModel", "ComplexityAwareModel", "ComplexityTerm", "BudgetController",
          "BudgetEarlyStopping", "ComplexityLogger", "Tokenizer", "load_data", "split_data",
          "export_model", "evaluate", "compress", "Recipe", "sensitivity", "search", "count", "shrink", "gated_copy", "structure_of",
          "budget_compress", "RMCompressError"]
SUBPACKAGES = ["config", "layers", "data", "cost", "models", "runtime", "structured", "training", "evaluation",
               "export", "compression", "commands"]


def test_all_lists_the_public_names():
    assert sorted(PUBLIC) + ["__version__"] == rmcompress.__all__


def test_every_public_name_is_callable_after_importing_every_subpackage():
    for sub in SUBPACKAGES:
        importlib.import_module(f"rmcompress.{sub}")
    for name in rmcompress.__all__:
        if name != "__version__":
            assert callable(getattr(rmcompress, name)), name
    from rmcompress import compress, evaluate
    from rmcompress.compression.pipeline import compress as compress_fn
    from rmcompress.evaluation.evaluate import evaluate as evaluate_fn

    assert evaluate is evaluate_fn and compress is compress_fn


def test_every_public_name_is_callable_in_a_fresh_interpreter():
    """Before anything else is imported, and after every subpackage is (the order of the trap)."""
    code = ("import importlib, rmcompress\n"
            f"before = [n for n in rmcompress.__all__ if n != '__version__' and not callable(getattr(rmcompress, n))]\n"
            f"for s in {SUBPACKAGES!r}: importlib.import_module('rmcompress.' + s)\n"
            "after = [n for n in rmcompress.__all__ if n != '__version__' and not callable(getattr(rmcompress, n))]\n"
            "assert not before and not after, (before, after)\n"
            "from rmcompress import evaluate\n"
            "import rmcompress.evaluation.evaluate as m\n"
            "assert evaluate is m.evaluate\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_is_cheap_and_the_version_is_lazy():
    code = ("import sys, rmcompress, rmcompress.cli\n"
            "assert 'tensorflow' not in sys.modules\n"
            "assert [m for m in sys.modules if m.startswith('rmcompress.')] == ['rmcompress.cli'], sorted(sys.modules)\n"
            "print(rmcompress.__version__)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == rmcompress.__version__


def test_an_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        rmcompress.nothing
