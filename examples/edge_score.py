"""Score texts on a device the way an app does: ``model.tflite`` + ``tokenizer.json``, nothing else.

Needs only ``ai_edge_litert``, ``tokenizers`` and numpy (no TensorFlow, no rmcompress)::

    python examples/edge_score.py EXPORT_DIR "a great film" "a dull film"
    printf 'a great film\\na dull film\\n' | python examples/edge_score.py EXPORT_DIR

EXPORT_DIR is what ``rmcompress export`` or ``rmcompress compress`` wrote. Prints one JSON line per
text, ``{"text": ..., "reward": ...}``, the same rewards as
``rmcompress score --model EXPORT_DIR/model.tflite``.
"""
import json
import sys
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from tokenizers import Tokenizer


def main(export_dir, texts):
    export_dir = Path(export_dir)
    # tokenizer.json pads and truncates every text to the model's seq_len, [CLS]/[SEP] included.
    tokenizer = Tokenizer.from_file(str(export_dir / "tokenizer.json"))
    interpreter = Interpreter(model_path=str(export_dir / "model.tflite"))
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    shape_set = False
    for text in texts:
        ids = np.asarray([tokenizer.encode(text).ids], dtype=np.int32)  # [1, seq_len]
        if not shape_set:  # one input shape per interpreter: [1, seq_len], set once
            interpreter.resize_tensor_input(inp["index"], ids.shape, strict=False)
            interpreter.allocate_tensors()
            shape_set = True
        interpreter.set_tensor(inp["index"], ids)
        interpreter.invoke()
        reward = float(interpreter.get_tensor(out["index"]).reshape(-1)[0])
        print(json.dumps({"text": text, "reward": reward}, ensure_ascii=False))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: edge_score.py EXPORT_DIR [TEXT ...]  (texts from stdin, one a line, when none given)")
    given = sys.argv[2:] or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    main(sys.argv[1], given)
