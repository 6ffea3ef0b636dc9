"""The complexity term of a reward training model on a gated scorer (:class:`ComplexityTerm`), and
``ComplexityAwareModel``: a ``RewardTrainingModel`` built with it.

The scorer carries hard-concrete gates (``build_reward_model(config, gated=True)``); the
expected FLOPs and params ``E[F]``, ``E[P]`` are the registry's formulas fed with the expected
number of open gates of every group (differentiable in the gates' ``log_alpha``).

Penalty mode (``flops_weight``/``params_weight`` = ``a_f``, ``a_p``)::

    loss = task + a_f * E[F] / F_dense + a_p * E[P] / P_dense

Budget mode (``budget_flops``/``budget_params`` = fractions ``b`` of the dense model), one
constraint per budget held by two Lagrange multipliers (``lambda_1``, ``lambda_2``)::

    gap  = E[F] / F_dense - target          (target: 1.0 -> b during warm-up, see BudgetController)
    loss = task + lambda_1 * gap + lambda_2 * gap^2

The weights and gates descend this loss; the multipliers *ascend* it (their gradients are
negated): ``lambda_1`` grows while the model is over the target and shrinks (can go negative)
when it is under, so training settles on ``E[F] = target`` (an equality constraint, as in CoFi
pruning). Weights use the compiled optimizer; gates their own Adam (``gate_learning_rate``, no
weight decay); multipliers plain SGD (``multiplier_learning_rate``): the term's optimizer groups
(:class:`rmcompress.training.model.OptimizerGroup`).

:class:`ComplexityTerm` is a scalar loss term (:class:`rmcompress.training.model.LossTerm`), so it
composes on any ``RewardTrainingModel`` with a gated scorer beside other terms (e.g. distillation):
``RewardTrainingModel(scorer, task, terms=[ComplexityTerm(budget_flops=0.5), ...])``. Its targets
and multipliers are weights of the model (``model.add_weight``), its optimizers the model's
``term_optimizers["gate"]``/``["multiplier"]``, so checkpoints and ``train --resume`` keep them.
:func:`complexity_term` finds the term on a model (the complexity callbacks use it).

Units, one per name wherever it appears (Keras metrics, ``fit`` history, :meth:`ComplexityTerm.complexity_state`,
the complexity logger's CSV and TensorBoard scalars): a cost named ``flops``/``params``
(``expected_flops``, ``dense_flops``, ...) is a count per example; a fraction of the dense model
ends in ``_fraction`` (``expected_flops_fraction``, ``flops_fraction``); ``*_target`` and ``*_gap``
are fractions of the dense model by definition (a budget is one), ``lambda_*`` are multipliers.

Logged as Keras metrics every step and epoch: ``task_loss``, ``expected_flops_fraction`` and
``expected_params_fraction``, ``flops_gap``/``params_gap``, ``flops_target``,
``lambda_flops``/``lambda_flops_sq`` (and params), the loss terms, and the reward ``reward``::

    R = quality * discount(c),   discount(c) = 1 + reward_gamma * log2(1 / c)

with ``c`` the expected FLOPs fraction (the params fraction when only params are targeted) and
``quality`` the batch accuracy (pairwise accuracy; ``1 / (1 + MAE)`` for regression). With the
default ``reward_gamma = 0.01`` each halving of the complexity is worth 1% of the quality: R
rises when quality holds and complexity falls; the dense model has ``R = quality``.

Distribution: the complexity terms depend only on the gates, are added once per step through
``tf.nn.scale_regularization_loss`` (a scalar term of ``RewardTrainingModel``), and gate noise is the same on
every replica, so a step under ``MirroredStrategy`` equals a single-device step.
"""
from __future__ import annotations

import math

from rmcompress._keras import keras, tf
from rmcompress.cost.registry import CompiledCost, is_gated
from rmcompress.errors import ModelError, UsageError
from rmcompress.layers.gates import gate_layers, alive_counts
from rmcompress.models.structure import cost_model, structure_of
from rmcompress.structured.gating import gated_copy
from rmcompress.structured.shrink import shrink
from rmcompress.training.model import LossTerm, OptimizerGroup, RewardTrainingModel

KINDS = ("flops", "params")


def _check_fraction(name, value):
    if value is not None and not 0.0 < float(value) <= 1.0:
        raise UsageError(f"{name} {value} must be a fraction of the dense model in (0, 1]")


class ComplexityTerm(LossTerm):
    """The complexity term (see module docstring) of the ``RewardTrainingModel`` it is attached to,
    whose scorer must be gated. The settings are checked here; the scorer is read in :meth:`attach`."""

    def __init__(self, *, flops_weight: float = 0.0, params_weight: float = 0.0,
                 budget_flops: float | None = None, budget_params: float | None = None,
                 gate_learning_rate: float = 0.05, multiplier_learning_rate: float = 0.01,
                 quadratic_init: float = 10.0, reward_gamma: float = 0.01):
        for name, v in (("--flops-weight", flops_weight), ("--params-weight", params_weight)):
            if v < 0:
                raise UsageError(f"{name} {v} must be >= 0")
        _check_fraction("--budget-flops", budget_flops)
        _check_fraction("--budget-params", budget_params)
        self.penalty_weights = {"flops": float(flops_weight), "params": float(params_weight)}
        self.budgets = {"flops": budget_flops, "params": budget_params}
        self.gate_learning_rate = float(gate_learning_rate)
        self.multiplier_learning_rate = float(multiplier_learning_rate)
        self.quadratic_init = float(quadratic_init)
        self.reward_gamma = float(reward_gamma)
        self.reward_kind = "params" if (budget_params or params_weight) and not (budget_flops or flops_weight) else "flops"
        self.model = None
        self.metrics = []

    def attach(self, model) -> None:
        if self.model is not None:
            raise ValueError("a ComplexityTerm belongs to one model")
        scorer = model.scorer
        if not is_gated(scorer):
            raise ModelError(f"model {scorer.name!r} has no gates; gate it first with rmcompress.gated_copy(model) "
                             "(ComplexityAwareModel does this itself)")
        self.model = model
        self.scorer = scorer
        self.structure = structure_of(scorer)
        self.cost = cost_model(scorer, self.structure)
        self.gates = gate_layers(scorer)
        self.compiled_cost = CompiledCost(self.cost, list(self.structure.groups))
        dense = self.cost.evaluate(self.structure.full_alive())
        self.dense = {"flops": float(dense.flops), "params": float(dense.params)}

        self.targets, self.multipliers = {}, {}
        for kind in KINDS:
            if self.budgets[kind] is None:
                continue
            self.targets[kind] = model.add_weight(name=f"{kind}_target", shape=(), trainable=False,
                                                  initializer=keras.initializers.Constant(float(self.budgets[kind])))
            self.multipliers[kind] = [
                model.add_weight(name=f"lambda_{kind}{s}", shape=(), trainable=True,
                                 initializer=keras.initializers.Constant(v))
                for s, v in (("", 0.0), ("_sq", self.quadratic_init))]
        self.gate_optimizer = keras.optimizers.Adam(self.gate_learning_rate)
        self.multiplier_optimizer = keras.optimizers.SGD(self.multiplier_learning_rate)
        for kind in KINDS:
            if self.penalty_weights[kind]:
                model.add_auxiliary_metric(f"{kind}_penalty")
            if kind in self.targets:
                model.add_auxiliary_metric(f"{kind}_lagrangian")
        names = ["expected_flops_fraction", "expected_params_fraction"]
        for kind in self.targets:
            names += [f"{kind}_target", f"{kind}_gap", f"lambda_{kind}", f"lambda_{kind}_sq"]
        names.append("reward")
        self._cx_trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.metrics = list(self._cx_trackers.values())

    # -- the loss --------------------------------------------------------------------------------------
    def expected_fractions(self) -> dict:
        """``{"flops": E[F]/F_dense, "params": E[P]/P_dense}`` as differentiable scalar tensors."""
        alive = self.structure.full_alive()
        for group, gate in self.gates.items():
            alive[group] = gate.expected_open()
        flops, params = self.compiled_cost(alive)
        return {"flops": flops / self.dense["flops"], "params": params / self.dense["params"]}

    def scalars(self, model, data, training: bool) -> dict:
        frac = self.expected_fractions()
        self._step_fractions = frac  # the same (pre-update) values for this step's metrics
        out = {}
        for kind in KINDS:
            if self.penalty_weights[kind]:
                out[f"{kind}_penalty"] = self.penalty_weights[kind] * frac[kind]
            if kind in self.targets:
                gap = frac[kind] - self.targets[kind]
                lam1, lam2 = self.multipliers[kind]
                out[f"{kind}_lagrangian"] = lam1 * gap + lam2 * tf.square(gap)
        return out

    def gate_variables(self) -> list:
        return [g.log_alpha for g in self.gates.values()]

    def multiplier_variables(self) -> list:
        return [v for pair in self.multipliers.values() for v in pair]

    def optimizer_groups(self, model) -> list:
        """Gates: ``gate_optimizer``; multipliers: ``multiplier_optimizer``, ascending."""
        return [OptimizerGroup("gate", tuple(self.gate_variables()), self.gate_optimizer),
                OptimizerGroup("multiplier", tuple(self.multiplier_variables()), self.multiplier_optimizer,
                               ascent=True)]

    # -- metrics -----------------------------------------------------------------------------------------
    def _quality(self, model, quality):
        q = tf.reduce_mean(quality[0])
        if model.loss_name in ("mse", "mae"):
            q = 1.0 / (1.0 + q)
        return q

    def discount(self, fraction):
        """``1 + reward_gamma * log2(1 / c)`` (see module docstring)."""
        return 1.0 + self.reward_gamma * (-tf.math.log(tf.maximum(fraction, 1e-12)) / math.log(2.0))

    def update_metrics(self, model, per_example, quality, aux) -> None:
        frac = self.__dict__.pop("_step_fractions", None) or self.expected_fractions()
        values = {"expected_flops_fraction": frac["flops"], "expected_params_fraction": frac["params"],
                  "reward": self._quality(model, quality) * self.discount(frac[self.reward_kind])}
        for kind in self.targets:
            values[f"{kind}_target"] = tf.identity(self.targets[kind])
            values[f"{kind}_gap"] = frac[kind] - self.targets[kind]
            values[f"lambda_{kind}"] = tf.identity(self.multipliers[kind][0])
            values[f"lambda_{kind}_sq"] = tf.identity(self.multipliers[kind][1])
        for name, v in values.items():
            self._cx_trackers[name].update_state(v)

    # -- eager read-outs for callbacks and reports ---------------------------------------------------
    def complexity_state(self) -> dict:
        """Current numbers (Python floats): expected and deterministic FLOPs/params (counts), their
        ``*_fraction`` of the dense model, targets, gaps and multipliers (units: module docstring)."""

        frac = {k: float(v.numpy()) for k, v in self.expected_fractions().items()}
        det = self.cost.evaluate(alive_counts(self.scorer, self.structure, "deterministic"))
        state = {"expected_flops": frac["flops"] * self.dense["flops"],
                 "expected_params": frac["params"] * self.dense["params"],
                 "expected_flops_fraction": frac["flops"], "expected_params_fraction": frac["params"],
                 "flops": float(det.flops), "params": float(det.params),
                 "flops_fraction": float(det.flops) / self.dense["flops"],
                 "params_fraction": float(det.params) / self.dense["params"],
                 "dense_flops": self.dense["flops"], "dense_params": self.dense["params"]}
        for kind in self.targets:
            state[f"{kind}_target"] = float(self.targets[kind].numpy())
            state[f"{kind}_gap"] = frac[kind] - state[f"{kind}_target"]
            state[f"lambda_{kind}"] = float(self.multipliers[kind][0].numpy())
            state[f"lambda_{kind}_sq"] = float(self.multipliers[kind][1].numpy())
        return state

    def budget_met(self, tolerance: float = 0.02) -> bool:
        """Deterministic (shrunk) FLOPs/params within ``budget * (1 + tolerance)`` for each budget."""
        state = self.complexity_state()
        return all(state[f"{kind}_fraction"] <= self.budgets[kind] * (1.0 + tolerance)
                   for kind in KINDS if self.budgets[kind] is not None)


def complexity_term(model) -> ComplexityTerm | None:
    """The :class:`ComplexityTerm` of ``model`` (a ``RewardTrainingModel``), or None."""
    for term in getattr(model, "terms", ()):
        if isinstance(term, ComplexityTerm):
            return term
    return None


def _delegated(name: str):
    return property(lambda self: getattr(self.complexity_term, name),
                    doc=f"The complexity term's ``{name}`` (:class:`ComplexityTerm`).")


class ComplexityAwareModel(RewardTrainingModel):
    """A ``RewardTrainingModel`` with a :class:`ComplexityTerm` (after ``terms``). ``scorer``: any
    supported model; a plain one is replaced by its gated copy (:func:`rmcompress.gated_copy`,
    same weights, every gate open), which ``model.scorer`` holds and ``rmcompress.shrink`` turns
    into the smaller plain model after training. The term's settings, state and read-outs are
    available on the model."""

    def __init__(self, scorer: keras.Model, task: str = "pointwise", loss: str = "bce",
                 center_coefficient: float = 0.0, *, flops_weight: float = 0.0, params_weight: float = 0.0,
                 budget_flops: float | None = None, budget_params: float | None = None,
                 gate_learning_rate: float = 0.05, multiplier_learning_rate: float = 0.01,
                 quadratic_init: float = 10.0, reward_gamma: float = 0.01, terms=(), **kwargs):
        if not is_gated(scorer):
            scorer = gated_copy(scorer)
        term = ComplexityTerm(flops_weight=flops_weight, params_weight=params_weight, budget_flops=budget_flops,
                              budget_params=budget_params, gate_learning_rate=gate_learning_rate,
                              multiplier_learning_rate=multiplier_learning_rate, quadratic_init=quadratic_init,
                              reward_gamma=reward_gamma)
        super().__init__(scorer, task=task, loss=loss, center_coefficient=center_coefficient,
                         terms=[*terms, term], **kwargs)

    @property
    def complexity_term(self) -> ComplexityTerm:
        return complexity_term(self)

    structure = _delegated("structure")
    cost = _delegated("cost")
    gates = _delegated("gates")
    compiled_cost = _delegated("compiled_cost")
    dense = _delegated("dense")
    penalty_weights = _delegated("penalty_weights")
    budgets = _delegated("budgets")
    reward_gamma = _delegated("reward_gamma")
    reward_kind = _delegated("reward_kind")
    targets = _delegated("targets")
    multipliers = _delegated("multipliers")
    gate_optimizer = _delegated("gate_optimizer")
    multiplier_optimizer = _delegated("multiplier_optimizer")

    def expected_fractions(self) -> dict:
        return self.complexity_term.expected_fractions()

    def discount(self, fraction):
        return self.complexity_term.discount(fraction)

    def complexity_state(self) -> dict:
        return self.complexity_term.complexity_state()

    def budget_met(self, tolerance: float = 0.02) -> bool:
        return self.complexity_term.budget_met(tolerance)

    def shrink(self, name: str | None = None) -> keras.Model:
        """The plain, smaller scorer: the units that fit this model's budgets (the most probable
        first, :func:`rmcompress.structured.shrink.project_to_budget`), or the deterministic gates
        when it trains with penalties only; equal to the gated scorer's deterministic output."""
        return shrink(self.scorer, name=name, budget_flops=self.budgets["flops"],
                      budget_params=self.budgets["params"])
