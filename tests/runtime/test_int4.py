"""runtime.int4: 4-bit packing, per-channel scales, a dynamic file whose chosen weights become
int4, smaller, runnable by LiteRT and close to the float file, and an integer file whose tables
become int4 with the rows put back to the int8 the next op reads."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress._keras import keras
from rmcompress.errors import ExportError
from rmcompress.models.architectures import build_reward_model
from rmcompress.runtime.int4 import (QMAX, int4_candidates, int4_tables, pack, quantize, table_candidates, table_forms,
                                     to_int4, unpack, weight_bits)
from rmcompress.runtime.tflite import TFLiteRunner, convert
from tests.helpers import randomize, token_ids


def test_pack_puts_the_first_value_in_the_low_nibble_and_round_trips():
    q = np.array([-7, 7, 0, -1, 3], np.int8)
    packed = pack(q)
    assert packed.dtype == np.uint8 and len(packed) == 3
    assert packed[0] == (0x09 | (0x07 << 4)) and packed[1] == (0x00 | (0x0F << 4))
    assert (unpack(packed, 5) == q).all()


def test_quantize_is_symmetric_with_one_scale_per_channel():
    w = np.array([[1.0, -0.6, 0.0], [0.0, 0.0, 0.0], [-2.0, 0.1, 0.3]], np.float32)
    q, s = quantize(w, axis=0)
    assert s.tolist() == pytest.approx([1 / QMAX, 1.0, 2 / QMAX]) and q.min() >= -QMAX and q.max() <= QMAX
    assert q[0].tolist() == [7, -4, 0] and q[1].tolist() == [0, 0, 0] and q[2, 0] == -7
    assert np.abs(q * s[:, None] - w).max() <= s.max() / 2 + 1e-7  # rounding error at most half a step
    _, cols = quantize(w, axis=1)
    assert cols.tolist() == pytest.approx([2 / QMAX, 0.6 / QMAX, 0.3 / QMAX])


@pytest.fixture(scope="module")
def files():
    model = randomize(build_reward_model(dict(arch="transformer", vocab_size=300, seq_len=16, width=32, depth=1,
                                              heads=2, head_dim=16, ffn=64, dropout=0.0)))
    return model, convert(model, "dynamic"), convert(model)


def test_every_weight_becomes_int4_the_file_shrinks_and_litert_runs_it(files):
    model, dynamic, float32 = files
    cands = int4_candidates(dynamic)
    assert {w.op for w in cands} == {"FULLY_CONNECTED", "GATHER"} and all(w.packable for w in cands)
    flat = to_int4(dynamic, float32)
    assert convert(model, "int4") == flat
    bits = weight_bits(flat)
    assert set(bits) == {w.name for w in cands} and set(bits.values()) == {4}
    assert set(weight_bits(dynamic).values()) == {8}
    assert len(flat) < len(dynamic) - 0.4 * sum(np.prod(w.shape) for w in cands)  # ~half a byte per weight saved
    ids = token_ids(64, 16, 300)
    ref = model.predict(ids, verbose=0).ravel()
    got = TFLiteRunner(flat).score(ids)
    assert np.corrcoef(ref, got)[0, 1] > 0.9
    assert np.abs(got - ref).max() > np.abs(TFLiteRunner(dynamic).score(ids) - ref).max()  # 4 bits are coarser


def test_only_named_tensors_change_and_unknown_names_fail(files):
    _, dynamic, float32 = files
    first = int4_candidates(dynamic)[0].name
    bits = weight_bits(to_int4(dynamic, float32, [first]))
    assert bits[first] == 4 and all(b == 8 for n, b in bits.items() if n != first)
    assert set(weight_bits(to_int4(dynamic, float32, [])).values()) == {8}
    with pytest.raises(ExportError, match="int4: tensor 'nope' is not a 4-bit candidate"):
        to_int4(dynamic, float32, ["nope"])


def test_an_odd_last_dimension_keeps_int8():
    ids = keras.Input((16,), dtype="int32")
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(300, 32)(ids))
    x = keras.layers.Dense(40)(keras.layers.Dense(33)(x))  # the second kernel is [40, 33] in TFLite
    model = randomize(keras.Model(ids, keras.layers.Dense(1)(x)))
    dynamic, float32 = convert(model, "dynamic"), convert(model)
    odd = [w for w in int4_candidates(dynamic) if not w.packable]
    assert odd and all(w.shape[-1] % 2 for w in odd)
    bits = weight_bits(to_int4(dynamic, float32))
    assert all(bits[w.name] == 8 for w in odd) and 4 in bits.values()


def _ops(flat: bytes) -> list[str]:
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model_from_bytearray(bytearray(flat))
    return [fb.opcode_to_name(model, op.opcodeIndex) for op in model.subgraphs[0].operators]


@pytest.fixture(scope="module")
def integer(files):
    model = files[0]
    return model, convert(model, "int8", representative_ids=token_ids(64, 16, 300, seed=1))


def test_an_integer_file_gets_4bit_tables_and_int8_rows_back_after_the_lookup(integer):
    model, flat = integer
    tables = table_candidates(flat)
    assert tables and {w.op for w in tables} == {"GATHER"} and not table_candidates(convert(model))  # float: none
    assert set(table_forms(flat).values()) == {"per column"}  # random tables: many distinct values
    four = int4_tables(flat)
    bits = weight_bits(four)
    assert {bits[w.name] for w in tables} == {4}
    assert all(b == 8 for n, b in bits.items() if n not in {w.name for w in tables})  # matmul weights stay int8
    saved = sum(int(np.prod(w.shape)) for w in tables) / 2
    assert len(flat) - len(four) > 0.8 * saved
    ops, before = _ops(four), _ops(flat)
    g = ops.index("GATHER")
    assert ops[g + 1:g + 3] == ["DEQUANTIZE", "QUANTIZE"] and len(ops) == len(before) + 2 * len(tables)
    ids = token_ids(128, 16, 300, seed=2)
    ref, got = TFLiteRunner(flat).score(ids), TFLiteRunner(four).score(ids)
    assert np.corrcoef(ref, got)[0, 1] > 0.98 and np.mean((ref > np.median(ref)) == (got > np.median(ref))) > 0.9
    assert np.abs(got - ref).max() > 0  # the table was re-rounded, not copied


def test_integer_tables_named_one_by_one_and_unknown_names_fail(integer):
    _, flat = integer
    assert int4_tables(flat, []) == flat  # nothing chosen: the file as it was, no operator codes added
    with pytest.raises(ExportError, match="int4: tensor 'nope' is not a 4-bit table of the integer file"):
        int4_tables(flat, ["nope"])
    with pytest.raises(ExportError, match="table form 'lut' unknown"):
        int4_tables(flat, form="lut")
    # min_rows: a table with fewer rows stays int8 (the 300-row token table here)
    (name, rows), = ((w.name, w.shape[0]) for w in table_candidates(flat))
    assert weight_bits(int4_tables(flat, min_rows=rows))[name] == 4
    assert weight_bits(int4_tables(flat, min_rows=rows + 1))[name] == 8 and not table_forms(flat, min_rows=rows + 1)


def test_a_table_of_at_most_16_values_becomes_a_lossless_palette():
    """A clustered table (12 distinct values, as ``embedding_clusters: 12`` leaves it): the file scores
    bit for bit like the int8 file, stored as 4-bit indices; ``form: column`` rounds instead."""
    model = randomize(build_reward_model(dict(arch="transformer", vocab_size=300, seq_len=16, width=32, depth=1,
                                              heads=2, head_dim=16, ffn=64, dropout=0.0)))
    table = model.get_layer("token_embedding")
    values = np.linspace(-0.3, 0.5, 12).astype(np.float32)
    table.set_weights([values[np.random.RandomState(0).randint(0, 12, table.embeddings.shape)]])
    flat = convert(model, "int8", representative_ids=token_ids(64, 16, 300, seed=1))
    forms = table_forms(flat, min_rows=17)
    assert list(forms.values()) == ["palette (12 values)"]
    four = int4_tables(flat, min_rows=17)
    ops = _ops(four)
    g = ops.index("GATHER")
    assert ops[g:g + 4] == ["GATHER", "DEQUANTIZE", "CAST", "GATHER"]
    assert weight_bits(four)[next(iter(forms))] == 4 and len(four) < len(flat) - 0.45 * 300 * 32
    ids = token_ids(128, 16, 300, seed=2)
    np.testing.assert_array_equal(TFLiteRunner(four).score(ids), TFLiteRunner(flat).score(ids))
    rounded = TFLiteRunner(int4_tables(flat, min_rows=17, form="column")).score(ids)
    assert np.abs(rounded - TFLiteRunner(flat).score(ids)).max() > 0


def test_the_4bit_table_holds_the_int8_values_to_half_a_4bit_step(integer):
    """Decoding the rewritten table gives the int8 table's values (``(q8 - zero point) * s8``: the
    converter's table is asymmetric) within half a column step."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb

    _, flat = integer
    name = table_candidates(flat)[0].name

    def table(content):
        model = fb.read_model_from_bytearray(bytearray(content))
        t = next(t for t in model.subgraphs[0].tensors if t.name.decode() == name)
        dtype = np.uint8 if t.type == schema.TensorType.INT4 else np.int8
        data = np.frombuffer(bytes(model.buffers[t.buffer].data), dtype)
        return t, data

    t8, q8 = table(flat)
    values = (q8.astype(np.float32).reshape(t8.shape) - t8.quantization.zeroPoint[0]) * t8.quantization.scale[0]
    t4, packed = table(int4_tables(flat))
    scales = np.asarray(t4.quantization.scale, np.float32)
    decoded = unpack(packed, values.size).reshape(values.shape) * scales
    assert t4.quantization.quantizedDimension == 1 and len(scales) == values.shape[1]
    assert np.all(np.abs(decoded - values) <= scales / 2 + 1e-7)


def _clustered(layer, k: int, seed: int) -> None:
    values = np.linspace(-0.3, 0.5, k).astype(np.float32)
    layer.set_weights([values[np.random.RandomState(seed).randint(0, k, layer.get_weights()[0].shape)]])


def test_every_clustered_table_of_a_file_becomes_a_palette():
    """Two tables of 12 values (a token table and a second lookup of the same ids): both palettes, the
    file scores bit for bit like the int8 file."""
    ids = keras.Input((16,), dtype="int32")
    a, b = keras.layers.Embedding(300, 8, name="tok_a"), keras.layers.Embedding(300, 8, name="tok_b")
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Add()([a(ids), b(ids)]))
    model = randomize(keras.Model(ids, keras.layers.Dense(1)(keras.layers.Dense(16)(x))))
    _clustered(a, 12, 0)
    _clustered(b, 12, 1)
    flat = convert(model, "int8", representative_ids=token_ids(64, 16, 300, seed=1))
    assert sorted(table_forms(flat).values()) == ["palette (12 values)"] * 2
    four = int4_tables(flat)
    assert _ops(four).count("CAST") == 2 and _ops(four).count("QUANTIZE") == _ops(flat).count("QUANTIZE")
    ids = token_ids(128, 16, 300, seed=2)
    np.testing.assert_array_equal(TFLiteRunner(four).score(ids), TFLiteRunner(flat).score(ids))


def test_a_position_table_looked_up_by_range_stays_int8():
    """A lookup whose indices a RANGE computes reads the whole table every call: not a candidate,
    whatever its size; the token table of the same file is."""
    from rmcompress._keras import tf

    ids = keras.Input((None,), dtype="int32")
    tok = keras.layers.Embedding(300, 8, name="tok")(ids)
    positions = keras.layers.Lambda(lambda t: tf.range(tf.shape(t)[1]), name="positions")(ids)
    pos = keras.layers.Embedding(400, 8, name="pos")(positions)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Add()([tok, pos]))
    model = randomize(keras.Model(ids, keras.layers.Dense(1)(keras.layers.Dense(16)(x))))
    flat = convert(model, "int8", representative_ids=token_ids(64, 16, 300, seed=1))
    assert _ops(flat).count("RANGE") == 1 and _ops(flat).count("GATHER") == 2
    assert [w.shape for w in table_candidates(flat)] == [(300, 8)]
    four = int4_tables(flat)
    assert sorted(weight_bits(four).values()).count(4) == 1
    ids = token_ids(32, 16, 300, seed=2)

    def score(content):  # one row a call: XNNPACK cannot resize this broadcast add to a batch
        runner = TFLiteRunner(content)
        return np.concatenate([runner.score(ids[k:k + 1]) for k in range(len(ids))])

    assert np.corrcoef(score(four), score(flat))[0, 1] > 0.98
