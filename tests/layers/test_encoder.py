"""TokenRemap: an id table read by gather, int32 or int16, the same rows either way, in Keras,
after a save/load and in TFLite."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress._keras import keras
from rmcompress.layers.encoder import TokenRemap


@pytest.mark.parametrize("dtype", ["int32", "int16"])
def test_token_remap_reads_its_table_as_int32_ids(dtype, tmp_path):
    from rmcompress.models.modeldir import custom_objects
    from rmcompress.runtime.tflite import TFLiteRunner, convert

    ids = keras.Input((5,), dtype="int32")
    remap = TokenRemap(40, table_dtype=dtype, name="token_remap")
    rows = remap(ids)
    out = keras.layers.Dense(1)(keras.layers.Flatten()(keras.layers.Embedding(10, 3)(rows)))
    model = keras.Model(ids, out)
    table = (np.arange(40) * 7 % 10).astype(dtype)
    remap.set_weights([table])
    x = np.array([[0, 1, 17, 39, 5]], np.int32)
    got = keras.Model(ids, rows)(x).numpy()
    assert got.dtype == np.int32 and np.array_equal(got, table[x].astype(np.int32))
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", custom_objects=custom_objects())
    assert again.get_layer("token_remap").table_dtype == dtype
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_allclose(TFLiteRunner(convert(model)).score(x).reshape(-1),
                               model.predict(x, verbose=0).reshape(-1), atol=1e-5)
    # dynamic-range int8 leaves the table as it is: int16 entries take 2 bytes each in the file
    from ai_edge_litert.interpreter import Interpreter

    flat = convert(model, "dynamic")
    tensors = Interpreter(model_content=flat).get_tensor_details()
    assert {np.dtype(t["dtype"]) for t in tensors if tuple(t["shape"]) == (40,)} == {np.dtype(dtype)}
    np.testing.assert_allclose(TFLiteRunner(flat).score(x).reshape(-1), model.predict(x, verbose=0).reshape(-1),
                               atol=0.05)


def test_token_remap_refuses_other_table_types():
    with pytest.raises(ValueError, match="table_dtype"):
        TokenRemap(4, table_dtype="int8")
