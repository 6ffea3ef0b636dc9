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

**Tables of an integer file** (:func:`int4_tables`: ``int8`` / QAT files, int8 activations). A
``GATHER`` table ``E [rows, d]`` is stored as int8 ``q8`` with one scale ``s8`` and zero point ``z8``,
which the gathered int8 rows keep; every later op reads those rows. Two 4-bit forms:

- **palette** (lossless), when the table holds at most 16 distinct int8 values (a table clustered
  to <= 16 values keeps that after QAT): the sorted values ``p [k]`` become an int8 palette with the
  table's ``s8`` and ``z8``, and the table holds each entry's index ``i`` as the int4 value
  ``i - 8`` (scale 1, zero point -8). Per call: ``GATHER`` of the index rows, ``DEQUANTIZE`` (gives
  ``i`` as float), ``CAST`` to int32, ``GATHER`` from the palette: ``x = p[i] = q8``, the rows the
  int8 file gathers, bit for bit;
- **per column** (lossy) otherwise: the values ``(q8 - z8) * s8`` re-quantised per column as above,
  ``q4 = round((q8 - z8) * s8 / s_j)``; the lookup returns int4 rows, and ``DEQUANTIZE`` (per channel)
  and ``QUANTIZE`` (to ``s8``, ``z8``) put back int8 rows ``x = round(q4 * s_j / s8) + z8``.

Either way the table's bytes halve and the added ops touch ``tokens x d`` values per call (the rows
looked up), not the table. Only a table with one scale, read by nothing but such lookups, is
rewritten; one looked up by position (indices from a ``RANGE``: every call reads all of it) stays
int8, and so does a file with no table chosen, byte for byte.
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


#: the most distinct int8 values a table may hold for the lossless palette form (2 ** 4)
PALETTE = 16


def _opcode(model, schema, builtin: int) -> int:
    """The index of ``builtin``'s operator code in ``model``, added (version 1) when the file has none."""
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _tensor(sub, schema, name: str, dtype: int, like=None, shape=None) -> int:
    """Append a tensor (``like``'s shape and shape signature, or ``shape``) and return its index."""
    t = schema.TensorT()
    if like is not None:
        t.shape = None if like.shape is None else np.array(like.shape, np.int32)
        t.shapeSignature = None if like.shapeSignature is None else np.array(like.shapeSignature, np.int32)
    else:
        t.shape = np.array(shape, np.int32)
    t.type, t.name, t.buffer = dtype, name, 0
    sub.tensors.append(t)
    return len(sub.tensors) - 1


def _op(opcode: int, inputs: list[int], outputs: list[int], schema, options=None, options_type: int = 0):
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, np.array(inputs, np.int32), np.array(outputs, np.int32)
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def _per_tensor(tensor, scale: float, zero: int, schema) -> None:
    q = schema.QuantizationParametersT()
    q.scale, q.zeroPoint, q.quantizedDimension = [float(scale)], [int(zero)], 0
    tensor.quantization = q


def _table_values(model, table) -> tuple[np.ndarray, float, int]:
    """``(q8 [rows, d] int8, s8, z8)`` of an int8 table tensor."""
    q8 = np.frombuffer(bytes(model.buffers[table.buffer].data), np.int8).reshape([int(s) for s in table.shape])
    quant = table.quantization
    zero = 0 if quant.zeroPoint is None or not len(quant.zeroPoint) else int(np.asarray(quant.zeroPoint).reshape(-1)[0])
    return q8, float(np.asarray(quant.scale, np.float32).reshape(-1)[0]), zero


def _tables(model, fb, schema) -> dict[int, Weight]:
    """``{table tensor index: Weight}``: the int8 tables :func:`int4_tables` may rewrite. A table is a
    constant int8 tensor with one scale, read only by ``GATHER`` ops (axis 0, no batch dimensions)
    that return int8 rows; a lookup whose indices a ``RANGE`` computes (a position table: every call
    reads all of it) keeps its table int8."""
    sub = model.subgraphs[0]
    producer = {int(o): fb.opcode_to_name(model, op.opcodeIndex) for op in sub.operators for o in op.outputs}
    readers: dict[int, list] = {}
    for op in sub.operators:
        for i in op.inputs:
            readers.setdefault(int(i), []).append(op)
    out = {}
    for op, t, name in _weights(model, fb, schema):
        i = int(op.inputs[0])
        if name != "GATHER" or i in out or t.quantization is None or len(t.quantization.scale) != 1:
            continue
        lookups = readers[i]
        if not all(fb.opcode_to_name(model, r.opcodeIndex) == "GATHER" and r.inputs[0] == i
                   and getattr(r.builtinOptions, "axis", 0) == 0 and getattr(r.builtinOptions, "batchDims", 0) == 0
                   and sub.tensors[r.outputs[0]].type == schema.TensorType.INT8
                   and producer.get(int(r.inputs[1])) != "RANGE" for r in lookups):
            continue
        out[i] = Weight(_name(t), name, tuple(int(s) for s in t.shape))
    return out


def table_candidates(integer: bytes) -> list[Weight]:
    """The tables of an integer file :func:`int4_tables` may make 4-bit (:func:`_tables`; module
    docstring: tables of an integer file), in op order; only the packable ones are rewritten."""
    fb, schema = _fb()
    return list(_tables(fb.read_model_from_bytearray(bytearray(integer)), fb, schema).values())


def table_forms(integer: bytes, min_rows: int = 0) -> dict[str, str]:
    """``{table name: "palette (k values)" | "per column"}``: the form :func:`int4_tables` gives each
    packable candidate with at least ``min_rows`` rows (module docstring)."""
    fb, schema = _fb()
    model = fb.read_model_from_bytearray(bytearray(integer))
    out = {}
    for i, w in _tables(model, fb, schema).items():
        if w.packable and w.shape[0] >= min_rows:
            k = len(np.unique(_table_values(model, model.subgraphs[0].tensors[i])[0]))
            out[w.name] = f"palette ({k} values)" if k <= PALETTE else "per column"
    return out


def int4_tables(integer: bytes, names=None, min_rows: int = 0, form: str = "auto") -> bytes:
    """``integer`` (an ``int8`` or QAT file) with the tables named in ``names`` (default: every packable
    :func:`table_candidates` with at least ``min_rows`` rows) in 4 bits. ``form``: ``auto`` -- the
    lossless palette where the table holds at most :data:`PALETTE` distinct values, else per column;
    ``column`` -- per column always (module docstring). A file with no table chosen is returned as it
    is. Raises :class:`ExportError` for a name that is not a packable candidate."""
    if form not in ("auto", "column"):
        raise ExportError(f"int4: table form {form!r} unknown; allowed: auto, column")
    names = None if names is None else set(names)
    fb, schema = _fb()
    model = fb.read_model_from_bytearray(bytearray(integer))
    sub = model.subgraphs[0]
    cands = _tables(model, fb, schema)  # by tensor index: a file whose names were stripped repeats names
    if names is not None:
        bad = sorted(names - {w.name for w in cands.values() if w.packable})
        if bad:
            raise ExportError(f"int4: tensor {bad[0]!r} is not a 4-bit table of the integer file "
                              "(an int8 GATHER table with int8 rows and an even last dimension)")
    chosen = {i for i, w in cands.items() if w.packable and (w.name in names if names is not None
                                                              else w.shape[0] >= min_rows)}
    if not chosen:
        return integer

    def code(op_name: str) -> int:
        return _opcode(model, schema, getattr(schema.BuiltinOperator, op_name))
    done: dict[int, tuple] = {}  # table tensor -> its form: ("palette", palette tensor) / ("column", scales)
    operators = []
    for op in list(sub.operators):
        operators.append(op)
        if fb.opcode_to_name(model, op.opcodeIndex) != "GATHER" or op.inputs[0] < 0:
            continue
        table_i = int(op.inputs[0])
        table = sub.tensors[table_i]
        name = _name(table)
        if table_i not in chosen:
            continue
        rows_i = int(op.outputs[0])  # int8, read by every later op: stays, now written by the added ops
        rows = sub.tensors[rows_i]
        if table_i not in done:
            q8, s8, z8 = _table_values(model, table)
            palette = np.unique(q8)
            if form == "auto" and len(palette) <= PALETTE:
                _set_data(model, sub, table, pack(np.searchsorted(palette, q8).astype(np.int8) - 8), schema)
                table.type = schema.TensorType.INT4
                _per_tensor(table, 1.0, -8, schema)
                pal_i = _tensor(sub, schema, f"{name}/palette", schema.TensorType.INT8, shape=[len(palette)])
                buf = schema.BufferT()
                buf.data = palette.astype(np.int8).view(np.uint8)
                model.buffers.append(buf)
                sub.tensors[pal_i].buffer = len(model.buffers) - 1
                _per_tensor(sub.tensors[pal_i], s8, z8, schema)
                done[table_i] = ("palette", pal_i)
            else:
                q4, scales = quantize((q8.astype(np.float32) - z8) * s8, axis=1)
                _set_data(model, sub, table, pack(q4), schema)
                _per_channel(table, scales, 1, schema)
                done[table_i] = ("column", scales)
        kind, arg = done[table_i]
        four_i = _tensor(sub, schema, f"{name}/int4_rows", schema.TensorType.INT4, like=rows)
        float_i = _tensor(sub, schema, f"{name}/float_rows", schema.TensorType.FLOAT32, like=rows)
        op.outputs = np.array([four_i], np.int32)
        operators.append(_op(code("DEQUANTIZE"), [four_i], [float_i], schema))
        if kind == "column":
            _per_channel(sub.tensors[four_i], arg, len(rows.shape) - 1, schema)
            operators.append(_op(code("QUANTIZE"), [float_i], [rows_i], schema))
            continue
        _per_tensor(sub.tensors[four_i], 1.0, -8, schema)
        index_i = _tensor(sub, schema, f"{name}/palette_index", schema.TensorType.INT32, like=rows)
        cast = schema.CastOptionsT()
        cast.inDataType, cast.outDataType = schema.TensorType.FLOAT32, schema.TensorType.INT32
        gather = schema.GatherOptionsT()
        operators += [_op(code("CAST"), [float_i], [index_i], schema, cast, schema.BuiltinOptions.CastOptions),
                      _op(code("GATHER"), [arg, index_i], [rows_i], schema, gather,
                          schema.BuiltinOptions.GatherOptions)]
    sub.operators = operators
    return bytes(fb.convert_object_to_bytearray(model))
