"""Per-op latency of a TFLite model: why one artifact is slower than another, op by op.

LiteRT's Python interpreter has no op profiler, so each op is timed on its own: the model is run
once with every intermediate tensor preserved, then every op is cut out into a one-op model (same
tensors, same quantisation parameters, same constant buffers) whose inputs are fed the values that
op saw in the full run (shape tensors computed at run time included). Each one-op model is timed
in the LiteRT interpreter, batch 1, one thread, with the default delegate (XNNPACK) on -- as the
full model runs -- and ``delegated`` says whether XNNPACK took the op (a one-op model that XNNPACK
takes has a second, delegate node). The sum of the op times is close to, but not equal to, the whole
model's time: a whole-model run also pays for moving between delegated and non-delegated parts.

``fastest_over_rounds(tables)`` merges profiles of one file taken at different times: each op's
time is its minimum over them (load from other processes only ever adds time).

``summarise(table)`` groups the table by op name and dtype: count, total microseconds, share.
"""
from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd


def _interpreter(content: bytes, **kw):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=bytes(content), num_threads=1, **kw)


def _capture(model_bytes: bytes, ids: np.ndarray) -> dict[int, np.ndarray]:
    """Every tensor's value in one run of the full model on ``ids`` ``[1, T]``."""
    it = _interpreter(model_bytes, experimental_preserve_all_tensors=True)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], list(ids.shape), strict=False)
    it.allocate_tensors()
    it.set_tensor(inp["index"], ids.astype(inp["dtype"]))
    it.invoke()
    values = {}
    for t in it.get_tensor_details():
        try:
            values[t["index"]] = np.array(it.get_tensor(t["index"]))
        except ValueError:  # tensors without data (e.g. optional)
            pass
    return values


def _time(it, inputs: list[tuple[int, np.ndarray]], runs: int, warmup: int) -> float:
    for idx, val in inputs:
        it.set_tensor(idx, val)
    for _ in range(warmup):
        it.invoke()
    times = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        it.invoke()
        times[i] = time.perf_counter() - t
    return float(np.median(times) * 1e6)


def profile_ops(model_bytes: bytes, ids: np.ndarray, runs: int = 200, warmup: int = 20) -> pd.DataFrame:
    """One row per op: ``op``, ``index``, ``dtype`` (of its first output), ``shape``, ``us`` (median
    microseconds, batch 1, one thread, XNNPACK on), ``delegated``."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    ids = np.asarray(ids, np.int32).reshape(1, -1)
    values = _capture(model_bytes, ids)
    model = fb.read_model_from_bytearray(bytearray(model_bytes))
    sub = model.subgraphs[0]
    rows = []
    for op_index, op in enumerate(sub.operators):
        name = fb.opcode_to_name(model, op.opcodeIndex)
        runtime_inputs = [i for i in op.inputs if i >= 0 and not _is_constant(model, sub, i)]
        one = copy.copy(model)
        one_sub = copy.copy(sub)
        one_sub.operators = [op]
        one_sub.inputs = list(runtime_inputs)
        one_sub.outputs = [o for o in op.outputs if o >= 0]
        one.subgraphs = [one_sub]
        one.signatureDefs = []
        content = bytes(fb.convert_object_to_bytearray(one))
        try:
            it = _interpreter(content)
            details = it.get_input_details()
            feeds = []
            for d, tensor_index in zip(details, runtime_inputs):
                val = values.get(tensor_index)
                if val is None:
                    raise ValueError(f"no captured value for tensor {tensor_index}")
                it.resize_tensor_input(d["index"], list(val.shape), strict=False)
                feeds.append((d["index"], val.astype(d["dtype"])))
            it.allocate_tensors()
            delegated = it._interpreter.NumNodes() > 1
            us = _time(it, feeds, runs, warmup)
        except (ValueError, RuntimeError) as e:  # an op that cannot stand alone: report, don't guess
            us, delegated = float("nan"), False
            name = f"{name} (not timed: {str(e).splitlines()[0][:60]})"
        out = sub.tensors[op.outputs[0]]
        val = values.get(op.outputs[0])
        rows.append({"index": op_index, "op": name, "dtype": fb.type_to_name(out.type).lower(),
                     "shape": "x".join(str(s) for s in (val.shape if val is not None else out.shape)),
                     "us": us, "delegated": bool(delegated)})
    return pd.DataFrame(rows, columns=["index", "op", "dtype", "shape", "us", "delegated"])


def fastest_over_rounds(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The first of several :func:`profile_ops` tables of one file, each op's ``us`` its minimum
    over the tables (ops matched by ``index``)."""
    best = pd.concat(tables).groupby("index")["us"].min()
    table = tables[0].copy()
    table["us"] = best.reindex(table["index"]).to_numpy()
    return table


def op_dtypes(model_bytes: bytes) -> list[tuple[str, str]]:
    """``(op name, dtype of its first output)`` for every op, in execution order (no timing)."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model_from_bytearray(bytearray(model_bytes))
    sub = model.subgraphs[0]
    return [(fb.opcode_to_name(model, op.opcodeIndex), fb.type_to_name(sub.tensors[op.outputs[0]].type).lower())
            for op in sub.operators]


def _is_constant(model, sub, tensor_index: int) -> bool:
    buf = model.buffers[sub.tensors[tensor_index].buffer]
    return buf.data is not None and len(buf.data) > 0


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Ops grouped by (op, dtype): ``count``, ``us`` total, ``share`` of the summed time,
    ``delegated`` count; slowest first."""
    g = table.groupby(["op", "dtype"], as_index=False).agg(
        count=("us", "size"), us=("us", "sum"), delegated=("delegated", "sum"))
    total = g["us"].sum()
    g["share"] = g["us"] / total if total else 0.0
    return g.sort_values("us", ascending=False).reset_index(drop=True)
