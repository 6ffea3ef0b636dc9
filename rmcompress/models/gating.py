"""The hooks ``build_reward_model(config, gated=True)`` calls to insert hard-concrete gates
(:mod:`rmcompress.layers.gates`) at each prunable group of the config's structure
(:mod:`rmcompress.models.groups`).
"""
from __future__ import annotations

import zlib

from rmcompress._keras import keras
from rmcompress.errors import ModelError
from rmcompress.layers.gates import (DEFAULT_INIT_LOG_ALPHA, BlockMix, BranchScale, GateMultiply,
                                     InputGatedConv1D, InputGatedDense, L0Gate, RowGate)
from rmcompress.models.groups import VOCAB, default_gate_groups, structure_for


def gate_name(group: str) -> str:
    return f"gate_{group}"


def gate_seed(base: int, group: str) -> int:
    return (int(base) * 1_000_003 + zlib.crc32(group.encode())) % (2 ** 31 - 1)


class GateBuilder:
    """The hooks ``build_reward_model`` calls to insert gates (``_NoGates`` is the plain version).

    ``groups``: the group names to gate (default: all of the config's groups but ``vocab``).
    """

    def __init__(self, config, groups=None, init_log_alpha: float = DEFAULT_INIT_LOG_ALPHA,
                 seed: int = 0, gate_vocab: bool = False):
        self.structure = structure_for(config)
        groups = default_gate_groups(self.structure, vocab=gate_vocab) if groups is None else list(groups)
        unknown = [g for g in groups if g not in self.structure.groups]
        if unknown:
            raise ModelError(f"cannot gate {unknown}: {self.structure.config.arch} groups are "
                             f"{sorted(self.structure.groups)}")
        self.groups = set(groups)
        self.init_log_alpha = float(init_log_alpha)
        self.seed = int(seed)

    def values(self, group, anchor, binary: bool = False):
        if group not in self.groups:
            return None
        return L0Gate(self.structure.groups[group], self.init_log_alpha, gate_seed(self.seed, group),
                      binary=binary, name=gate_name(group))(anchor)

    def mix(self, x_in, x_out, block_z, name):
        return x_out if block_z is None else BlockMix(name=name)([x_in, x_out, block_z])

    def units(self, x, z, name):
        return x if z is None else GateMultiply(("units",), name=name)([x, z])

    def branch_scale(self, block_z, units_z, name):
        """The scalar ``[1]`` a sub-layer's output is multiplied by (:class:`BranchScale`): the block
        gate times ``any`` of the unit gates; None when neither is gated."""
        modes, zs = [], []
        for mode, z in (("scalar", block_z), ("any", units_z)):
            if z is not None:
                modes.append(mode)
                zs.append(z)
        return BranchScale(tuple(modes), name=name)(zs) if zs else None

    def rows(self, x, ids, anchor):
        z = self.values(VOCAB, anchor)
        return x if z is None else RowGate(name=f"{VOCAB}_gating")([x, ids, z])

    def dense(self, h, z, units: int, name: str, scale=None):
        """``Dense(units)(h * z) * scale`` with the gate applied through the kernel's rows and the
        scale through the kernel and bias (None: plain / unscaled)."""
        if z is None:
            y = keras.layers.Dense(units, name=name)(h)
            return y if scale is None else GateMultiply(("scalar",), name=f"{name}_scale")([y, scale])
        if scale is None:
            return InputGatedDense(units, name=name)([h, z])
        return InputGatedDense(units, output_scale=True, name=name)([h, z, scale])

    def conv1d(self, x, z, filters: int, kernel_size: int, name: str):
        """A 'valid' ReLU convolution of ``x`` whose input channels are scaled by ``z`` (None: plain)."""
        if z is None:
            return keras.layers.Conv1D(filters, kernel_size, padding="valid", activation="relu", name=name)(x)
        return InputGatedConv1D(filters, kernel_size, padding="valid", activation="relu", name=name)([x, z])


__all__ = ["GateBuilder", "gate_name", "gate_seed"]
