"""The import contract: dependencies inside ``rmcompress`` point one way, bottom to top.

Layers, bottom first (a module may import its own layer and the layers below, never above):

 1. core         ``_keras`` (the one Keras import), ``_quiet``, ``_version``, ``errors``, ``fileio``,
                 ``faults``, ``metrics`` (quality metrics from raw scores, numpy and scipy.stats) and ``sizes``
                 (file sizes): training, export and evaluation all measure with them
 2. config       ``config``: the choices of every setting, the validation of settings files
 3. layers, data two independent siblings (neither imports the other): every custom Keras layer;
                 loading, splitting, tokenising and batching data
 4. cost         the registry of per-layer facts (FLOPs, params, prunable roles)
 5. models       ArchConfig, the prunable groups of a config, the gate hooks, the architectures,
                 backbones, losses, the model directory, and ``structure`` (reading a built model
                 back: its config, its cost, ``count``). ``count`` sits here and not in ``cost``
                 because counting a gated model needs the architecture's group wiring.
 6. runtime      TFLite conversion and the LiteRT runner, SavedModel loading and signatures:
                 running an artifact (evaluation converts a Keras model to float TFLite to time it,
                 so the converter lives here, below evaluation and export)
 7. structured   transformations that do not train: ``gated_copy``, ``shrink`` (and shrinking a
                 model directory), magnitude importance and the selection of units to a budget
 8. training     training models, loss terms, the fit loop, callbacks, resume, interrupts,
                 distillation, scorer sources, Taylor importance (it needs the training loss's
                 gradients), and the run-level orchestrations that train: ``train`` and
                 ``budget_compress``. ``structured`` is deliberately below ``training``: gated
                 copies, shrinking and weight importance do not train, and the orchestrations that
                 train use them.
 9. evaluation   scoring any artifact, latency, op profiles, tables, reports
10. export       SavedModel/TFLite files, parity checks, export metadata
11. compression  recipes, passes, the compression pipeline
12. top          ``cli``, ``__main__``, ``commands``, ``clidoc``

``rmcompress/__init__.py`` is the facade: it resolves the public names lazily and imports nothing
of the package eagerly; no module of the package imports it.

Function-level imports of rmcompress modules are allowed only in ``cli`` and ``commands`` (the CLI
delays loading TensorFlow until a subcommand runs). The contract has no listed exceptions.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "rmcompress"

#: (rank, layer name, module prefixes). Prefixes match a module or a package and everything in it.
LAYERS = [
    (1, "core", ["rmcompress._keras", "rmcompress._quiet", "rmcompress._version", "rmcompress.errors",
                 "rmcompress.fileio", "rmcompress.faults", "rmcompress.ownership", "rmcompress.metrics",
                 "rmcompress.sizes"]),
    (2, "config", ["rmcompress.config"]),
    (3, "layers", ["rmcompress.layers"]),
    (3, "data", ["rmcompress.data"]),
    (4, "cost", ["rmcompress.cost"]),
    (5, "models", ["rmcompress.models"]),
    (6, "runtime", ["rmcompress.runtime"]),
    (7, "structured", ["rmcompress.structured"]),
    (8, "training", ["rmcompress.training"]),
    (9, "evaluation", ["rmcompress.evaluation"]),
    (10, "export", ["rmcompress.export"]),
    (11, "compression", ["rmcompress.compression"]),
    (12, "top", ["rmcompress.cli", "rmcompress.__main__", "rmcompress.commands", "rmcompress.clidoc"]),
]
FACADE = "rmcompress"
#: where function-level imports of rmcompress modules may delay loading TensorFlow
LAZY_ALLOWED = ["rmcompress.cli", "rmcompress.commands"]


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str):
    """``(rank, name)`` of ``module``'s layer, None when no layer claims it."""
    for rank, name, prefixes in LAYERS:
        if any(_matches(module, p) for p in prefixes):
            return rank, name
    return None


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a (possibly relative) ``from ... import`` names."""
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imported(node, importer: str, is_package: bool, known: set[str]) -> list[str]:
    """The rmcompress modules an import statement (or ``importlib.import_module`` call) loads."""
    names = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        mod = _resolve(importer, is_package, node)
        names = []
        for a in node.names:
            sub = f"{mod}.{a.name}"
            names.append(sub if sub in known else mod)  # ``from pkg import module`` names the module
    elif isinstance(node, ast.Call):
        f = node.func
        is_import_module = ((isinstance(f, ast.Attribute) and f.attr == "import_module")
                            or (isinstance(f, ast.Name) and f.id == "import_module"))
        if is_import_module and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names = [arg.value]
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                names = [str(arg.values[0].value).rstrip(".")]  # f"rmcompress.commands.{name}"
    return [n for n in names if n == FACADE or n.startswith(FACADE + ".")]


def _nearest_module(name: str, known: set[str]) -> str:
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def violations(source: str, importer: str, is_package: bool = False, known: set[str] | None = None) -> list[str]:
    """Every breach of the contract in one module's source, as ``importer:line: message``."""
    known = set(all_modules()) if known is None else known
    tree = ast.parse(source)
    inside_function = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for node in ast.walk(fn):
                inside_function.add(id(node))
    mine = layer_of(importer)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Call)):
            continue
        targets = _imported(node, importer, is_package, known)
        if not targets:
            continue
        if importer == FACADE:
            if not isinstance(node, ast.Call) and id(node) not in inside_function:
                out.append(f"{importer}:{node.lineno}: the facade imports {targets[0]} eagerly")
            continue
        if (id(node) in inside_function and not isinstance(node, ast.Call)
                and not any(_matches(importer, p) for p in LAZY_ALLOWED)):
            out.append(f"{importer}:{node.lineno}: function-level import of {targets[0]}")
        for target in targets:
            target = _nearest_module(target, known)
            if target == FACADE:
                out.append(f"{importer}:{node.lineno}: imports the facade {FACADE} (import the defining module)")
                continue
            theirs = layer_of(target)
            if mine is None or theirs is None:
                continue  # reported by test_every_module_has_a_layer
            if theirs[0] > mine[0] or (theirs[0] == mine[0] and theirs[1] != mine[1]):
                out.append(f"{importer}:{node.lineno}: {mine[1]} (layer {mine[0]}) imports {target} "
                           f"({theirs[1]}, layer {theirs[0]})")
    return out


def test_every_module_has_a_layer():
    unassigned = [m for m in all_modules() if m != FACADE and layer_of(m) is None]
    assert not unassigned, f"modules with no layer in tests/test_layers.py LAYERS: {unassigned}"


def test_imports_point_down_only():
    known = set(all_modules())
    found = []
    for module, path in all_modules().items():
        found += violations(path.read_text(), module, path.name == "__init__.py", known)
    assert not found, "import contract broken:\n" + "\n".join(found)


def test_no_import_cycles():
    """No cycle among modules, not even inside one layer."""
    known = set(all_modules())
    edges = {}
    for module, path in all_modules().items():
        tree = ast.parse(path.read_text())
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets |= {_nearest_module(t, known) for t in _imported(node, module, path.name == "__init__.py", known)}
        edges[module] = targets - {module}
    state, cycle = {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(edges.get(m, ())):
            if state.get(t) == "open":
                cycle.extend(stack[stack.index(t):] + [t] if t in stack else [m, t])
                return True
            if t not in state and visit(t, stack + [t]):
                return True
        state[m] = "done"
        return False

    for m in sorted(edges):
        if m not in state and visit(m, [m]):
            break
    assert not cycle, f"import cycle: {' -> '.join(cycle)}"


def test_subpackage_inits_hold_no_lazy_attribute_hooks():
    hooks = [m for m, p in all_modules().items()
             if p.name == "__init__.py" and m != FACADE and "def __getattr__" in p.read_text()]
    assert not hooks, f"subpackage __init__ with a lazy __getattr__: {hooks}"


KNOWN = {"rmcompress", "rmcompress.errors", "rmcompress.config", "rmcompress.config.choices", "rmcompress.cost",
         "rmcompress.cost.registry", "rmcompress.models", "rmcompress.models.structure", "rmcompress.training",
         "rmcompress.training.trainer", "rmcompress.layers", "rmcompress.layers.gates", "rmcompress.data",
         "rmcompress.data.loaders", "rmcompress.cli", "rmcompress.commands", "rmcompress.commands.train"}


@pytest.mark.parametrize("importer, source, expected", [
    ("rmcompress.cost.registry", "from rmcompress.models.structure import count\n",
     "rmcompress.cost.registry:1: cost (layer 4) imports rmcompress.models.structure (models, layer 5)"),
    ("rmcompress.cost.registry", "import rmcompress.training.trainer\n",
     "rmcompress.cost.registry:1: cost (layer 4) imports rmcompress.training.trainer (training, layer 8)"),
    ("rmcompress.cost.registry", "from ..training import trainer\n",
     "rmcompress.cost.registry:1: cost (layer 4) imports rmcompress.training.trainer (training, layer 8)"),
    ("rmcompress.layers.gates", "from rmcompress.data.loaders import load_data\n",
     "rmcompress.layers.gates:1: layers (layer 3) imports rmcompress.data.loaders (data, layer 3)"),
    ("rmcompress.models.structure", "def f():\n    from rmcompress.errors import ModelError\n",
     "rmcompress.models.structure:2: function-level import of rmcompress.errors"),
    ("rmcompress.models.structure", "import importlib\nm = importlib.import_module('rmcompress.training.trainer')\n",
     "rmcompress.models.structure:2: models (layer 5) imports rmcompress.training.trainer (training, layer 8)"),
    ("rmcompress.models.structure", "from rmcompress import count\n",
     "rmcompress.models.structure:1: imports the facade rmcompress (import the defining module)"),
    ("rmcompress", "from rmcompress.errors import RMCompressError\n",
     "rmcompress:1: the facade imports rmcompress.errors eagerly"),
])
def test_checker_reports_a_breach(importer, source, expected):
    assert violations(source, importer, known=KNOWN) == [expected]


@pytest.mark.parametrize("importer, source", [
    ("rmcompress.models.structure", "from rmcompress.cost.registry import CostModel\nfrom rmcompress.errors import E\n"),
    ("rmcompress.models.structure", "from .. import errors\nfrom . import structure\n"),
    ("rmcompress.training.trainer", "from rmcompress.data.loaders import load_data\nimport numpy\n"),
    ("rmcompress.commands.train", "def run():\n    from rmcompress.training.trainer import train\n"),
    ("rmcompress.cli", "import importlib\ndef f(n):\n    return importlib.import_module(f'rmcompress.commands.{n}')\n"),
    ("rmcompress", "import importlib\ndef __getattr__(n):\n    return importlib.import_module('rmcompress.errors')\n"),
])
def test_checker_accepts_downward_imports(importer, source):
    assert violations(source, importer, known=KNOWN) == []
