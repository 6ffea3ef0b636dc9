"""4-bit weights in a dynamic-range TFLite file, in the layout the LiteRT runtime executes.

The start is the ``dynamic`` file (TFLite converter: int8 weights, float activations). Each chosen
weight tensor is re-quantised from its float value (the tensor of the same name in the float32 file of
the same model) to signed 4-bit integers, symmetric (zero point 0), ``q = round(w / s)`` in ``[-7, 7]``:

- a ``FULLY_CONNECTED`` weight ``W [out, in]`` (Dense, EinsumDense, fused Q/K/V): one scale per
  output channel, ``s_o = max_i |W_oi| / 7`` -- the layout of ai-edge-quantizer's
  ``dynamic_wi4_afp32`` recipe, which XNNPACK runs as a dynamically quantised fully-connected layer
  with 4-bit channel-wise weights (activations quantised to int8 per call);
- a ``GATHER`` table ``E [rows, d]`` whose int8 rows the converter dequantises after the lookup (the
  token embedding): one scale per column, ``s_j = max_r |E_rj| / 7``; the gathered int4 rows keep
  those scales on their last axis and ``DEQUANTIZE`` (per channel) turns them into float.

Two values per byte, the first in the low nibble (``pack``). A tensor whose last dimension is odd
keeps its int8 weights (a row would start in the middle of a byte). Every other tensor, operator and
quantisation parameter is the dynamic file's, so a file with no tensor chosen is the dynamic file.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rmcompress.errors import ExportError

#: the largest 4-bit magnitude used (symmetric: -8 is left out, as the 8-bit kernels leave out -128)
QMAX = 7


@dataclass(frozen=True)
class Weight:
    """A weight tensor of the dynamic file that can hold 4-bit values: its ``name``, the ``op`` reading
    it (``FULLY_CONNECTED`` / ``GATHER``), its ``shape`` and whether its last dimension allows packing."""

    name: str
    op: str
    shape: tuple

    @property
    def packable(self) -> bool:
        return len(self.shape) == 2 and self.shape[-1] % 2 == 0


def _fb():
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils, schema


def quantize(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``(q int8 in [-QMAX, QMAX], scales float32)``, one scale per index of ``axis`` (module docstring);
    an all-zero slice gets scale 1 and zeros."""
    w = np.asarray(w, np.float32)
    reduce = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    peak = np.max(np.abs(w), axis=reduce, keepdims=True)
    scales = np.where(peak > 0, peak / QMAX, 1.0).astype(np.float32)
    q = np.clip(np.round(w / scales), -QMAX, QMAX).astype(np.int8)
    return q, scales.reshape(-1)


def pack(q: np.ndarray) -> np.ndarray:
    """Signed 4-bit values, two per byte, the first in the low nibble (an odd count is padded with 0)."""
    flat = np.asarray(q, np.int8).reshape(-1)
    if flat.size % 2:
        flat = np.append(flat, np.int8(0))
    return ((flat[0::2] & 0x0F) | ((flat[1::2] & 0x0F) << 4)).astype(np.uint8)


def unpack(packed: np.ndarray, n: int) -> np.ndarray:
    """The inverse of :func:`pack`: ``n`` signed values."""
    b = np.asarray(packed, np.uint8)
    lo, hi = (b & 0x0F).astype(np.int8), (b >> 4).astype(np.int8)
    v = np.stack([lo, hi], 1).reshape(-1)[:n]
    return np.where(v > 7, v - 16, v).astype(np.int8)


def _name(tensor) -> str:
    n = tensor.name
    return n.decode() if isinstance(n, bytes) else str(n)


def _weights(model, fb, schema) -> list[tuple[object, object, str]]:
    """``(op, weight tensor, op name)`` for every int8 constant FC weight / GATHER table of ``model``."""
    sub = model.subgraphs[0]
    out = []
    for op in sub.operators:
        name = fb.opcode_to_name(model, op.opcodeIndex)
        slot = {"FULLY_CONNECTED": 1, "GATHER": 0}.get(name)
        if slot is None or len(op.inputs) <= slot or op.inputs[slot] < 0:
            continue
        t = sub.tensors[op.inputs[slot]]
        data = model.buffers[t.buffer].data
        if t.type == schema.TensorType.INT8 and data is not None and len(data):
            out.append((op, t, name))
    return out


def int4_candidates(dynamic: bytes) -> list[Weight]:
    """The weight tensors of a ``dynamic`` file that :func:`to_int4` can make 4-bit, in op order."""
    fb, schema = _fb()
    model = fb.read_model_from_bytearray(bytearray(dynamic))
    return [Weight(_name(t), name, tuple(int(s) for s in t.shape)) for _, t, name in _weights(model, fb, schema)]


def _float_tensors(float32: bytes, fb) -> dict[str, np.ndarray]:
    model = fb.read_model_from_bytearray(bytearray(float32))
    out = {}
    for t in model.subgraphs[0].tensors:
        data = model.buffers[t.buffer].data
        if data is not None and len(data) and t.type == 0:  # FLOAT32 constants
            out[_name(t)] = np.frombuffer(bytes(data), np.float32).reshape([int(s) for s in t.shape])
    return out


def _set_data(model, sub, tensor, packed: np.ndarray, schema) -> None:
    """Put ``packed`` into ``tensor``'s buffer: in place when no other tensor shares it."""
    users = sum(1 for t in sub.tensors if t.buffer == tensor.buffer)
    if users == 1:
        model.buffers[tensor.buffer].data = packed
        return
    buf = schema.BufferT()
    buf.data = packed
    model.buffers.append(buf)
    tensor.buffer = len(model.buffers) - 1


def _per_channel(tensor, scales: np.ndarray, axis: int, schema) -> None:
    q = tensor.quantization or schema.QuantizationParametersT()
    q.scale = scales.astype(np.float32).tolist()
    q.zeroPoint = [0] * len(scales)
    q.quantizedDimension = axis
    q.min = q.max = None
    tensor.quantization = q
    tensor.type = schema.TensorType.INT4


def to_int4(dynamic: bytes, float32: bytes, names=None) -> bytes:
    """``dynamic`` with the weight tensors named in ``names`` (default: every packable candidate,
    :func:`int4_candidates`) in 4 bits, re-quantised from ``float32``'s tensors of the same names.

    Raises :class:`ExportError` when a named tensor is not a packable candidate or the float file has
    no float tensor of that name and shape."""
    fb, schema = _fb()
    model = fb.read_model_from_bytearray(bytearray(dynamic))
    sub = model.subgraphs[0]
    found = _weights(model, fb, schema)
    packable = {_name(t) for _, t, _ in found if Weight(_name(t), "", tuple(t.shape)).packable}
    wanted = packable if names is None else set(names)
    bad = sorted(wanted - packable)
    if bad:
        raise ExportError(f"int4: tensor {bad[0]!r} is not a 4-bit candidate of the dynamic file "
                          "(an int8 FULLY_CONNECTED weight or GATHER table with an even last dimension)")
    floats = _float_tensors(float32, fb)
    consumers = {}
    for op in sub.operators:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    for op, t, opname in found:
        name = _name(t)
        if name not in wanted:
            continue
        w = floats.get(name)
        if w is None or tuple(w.shape) != tuple(t.shape):
            raise ExportError(f"int4: the float file has no float tensor {name!r} of shape {list(t.shape)}")
        if opname == "FULLY_CONNECTED":
            q, scales = quantize(w, axis=0)
            _set_data(model, sub, t, pack(q), schema)
            _per_channel(t, scales, 0, schema)
            continue
        # GATHER: per-column scales, carried by the gathered rows to the DEQUANTIZE that reads them
        out = sub.tensors[op.outputs[0]]
        readers = consumers.get(op.outputs[0], [])
        if not readers or any(fb.opcode_to_name(model, r.opcodeIndex) != "DEQUANTIZE" for r in readers):
            raise ExportError(f"int4: the lookup of {name!r} is not followed by DEQUANTIZE")
        q, scales = quantize(w, axis=1)
        _set_data(model, sub, t, pack(q), schema)
        _per_channel(t, scales, 1, schema)
        _per_channel(out, scales, len(out.shape) - 1, schema)
    return bytes(fb.convert_object_to_bytearray(model))


def weight_bits(flat: bytes) -> dict[str, int]:
    """``{weight tensor name: 4 or 8}`` for the int4/int8 FC weights and GATHER tables of ``flat``."""
    fb, schema = _fb()
    model = fb.read_model_from_bytearray(bytearray(flat))
    sub = model.subgraphs[0]
    bits = {schema.TensorType.INT4: 4, schema.TensorType.INT8: 8}
    out = {}
    for op in sub.operators:
        slot = {"FULLY_CONNECTED": 1, "GATHER": 0}.get(fb.opcode_to_name(model, op.opcodeIndex))
        if slot is None or len(op.inputs) <= slot or op.inputs[slot] < 0:
            continue
        t = sub.tensors[op.inputs[slot]]
        data = model.buffers[t.buffer].data
        if t.type in bits and data is not None and len(data):
            out[_name(t)] = bits[t.type]
    return out
