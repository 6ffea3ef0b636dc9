"""runtime.int4: 4-bit packing, per-channel scales, and a dynamic file whose chosen weights become
int4, smaller, runnable by LiteRT and close to the float file."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress._keras import keras
from rmcompress.errors import ExportError
from rmcompress.models.architectures import build_reward_model
from rmcompress.runtime.int4 import QMAX, int4_candidates, pack, quantize, to_int4, unpack, weight_bits
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
