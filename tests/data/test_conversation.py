"""TRL's formats: standard, implicit prompt and conversational pairs, written as plain text by the
one documented template; a long conversation keeps its end (the final assistant turn)."""
import json

import pandas as pd
import pytest

from rmcompress.data.conversation import render
from rmcompress.data.loaders import load_data, load_pairwise
from rmcompress.data.tokenizer import Tokenizer, TokenizerConfig
from rmcompress.errors import DataError

PROMPT = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "How long do I boil an egg?"}]
CHOSEN = [{"role": "assistant", "content": "Eight minutes."}]
REJECTED = [{"role": "assistant", "content": "No idea."}]


def test_the_template():
    assert render(PROMPT + CHOSEN) == "System: Be kind.\nUser: How long do I boil an egg?\nAssistant: Eight minutes."
    assert render([{"role": "tool", "content": "42"}, {"role": "Assistant", "content": None}]) == "Tool: 42\nAssistant: "


@pytest.mark.parametrize("message,match", [
    ("hi", r"^x:3: chosen text: message 1 is a str, expected \{'role': ..., 'content': ...\}"),
    ({"content": "hi"}, r"^x:3: chosen text: message 1 has no role"),
    ({"role": "user", "content": [{"type": "text", "text": "hi"}]},
     r"^x:3: chosen text: message 1 \(user\) has list content; only text content"),
])
def test_a_bad_message_is_named(message, match):
    with pytest.raises(DataError, match=match):
        render([message], "x:3: chosen text")


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_conversational_pairs_with_and_without_prompt(tmp_path):
    explicit = _jsonl(tmp_path / "c.jsonl", [{"prompt": PROMPT, "chosen": CHOSEN, "rejected": REJECTED}])
    implicit = _jsonl(tmp_path / "i.jsonl", [{"chosen": PROMPT + CHOSEN, "rejected": PROMPT + REJECTED}])
    for path in (explicit, implicit):
        d = load_data(path)
        assert d.task == "pairwise"
        assert d.chosen == [render(PROMPT + CHOSEN)] and d.rejected == [render(PROMPT + REJECTED)]


def test_prompt_and_completion_join_by_the_template_whatever_their_white_space(tmp_path):
    for content in ("hi ", "hi\n", " hi"):
        prompt = [{"role": "user", "content": content}]
        path = _jsonl(tmp_path / "w.jsonl", [{"prompt": prompt, "chosen": CHOSEN, "rejected": REJECTED}])
        d = load_data(path)
        assert d.chosen == [render(prompt + CHOSEN)] and d.rejected == [render(prompt + REJECTED)], content


def test_standard_pairs_and_parquet_conversations(tmp_path):
    d = load_data(pd.DataFrame({"prompt": ["Q?"], "chosen": ["yes"], "rejected": ["no"]}))
    assert d.chosen == ["Q?\nyes"] and d.rejected == ["Q?\nno"]
    pd.DataFrame([{"prompt": PROMPT, "chosen": CHOSEN, "rejected": REJECTED}]).to_parquet(tmp_path / "c.parquet")
    assert load_data(tmp_path / "c.parquet").chosen == [render(PROMPT + CHOSEN)]


def test_a_bad_message_in_a_file_names_the_line(tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", [{"chosen": CHOSEN, "rejected": REJECTED},
                                         {"chosen": [{"content": "x"}], "rejected": REJECTED}])
    with pytest.raises(DataError, match=r"c.jsonl:2: chosen text: message 1 has no role"):
        load_data(path)


def test_renamed_columns_of_a_conversational_dataset():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"context": PROMPT, "good": CHOSEN, "bad": REJECTED}] * 2)
    d = load_pairwise(ds, prompt_column="context", chosen_column="good", rejected_column="bad")
    assert d.chosen == [render(PROMPT + CHOSEN)] * 2
    with pytest.raises(DataError, match=r"Dataset: no rejected column 'worse'; columns found: \['context', 'good', 'bad'\]"):
        load_pairwise(ds, chosen_column="good", rejected_column="worse")


def test_a_long_conversation_keeps_its_final_assistant_turn(tmp_path):
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "filler " * 30}
               for i in range(20)]
    chosen = history + [{"role": "assistant", "content": "the final answer is kept"}]
    rejected = history + [{"role": "assistant", "content": "a worse reply"}]
    d = load_pairwise(pd.DataFrame({"chosen": [chosen], "rejected": [rejected]}), max_chars=300)
    assert d.truncated == 2 and len(d.chosen[0]) == 300  # both texts cut
    assert d.chosen[0].endswith("Assistant: the final answer is kept") and d.rejected[0].endswith("Assistant: a worse reply")
    # the tokeniser of a pairwise model keeps the end too (its default side, TrainConfig.resolved_truncate)
    from tests.helpers import tiny_config

    keep = tiny_config(task="pairwise").resolved_truncate()
    tok = Tokenizer.train(d.chosen + d.rejected, 400, TokenizerConfig(seq_len=12, keep=keep))
    kept = tok.decode(tok.encode(d.chosen)[0])
    assert keep == "end" and kept.endswith("answer is kept"), kept
    start = Tokenizer(tok.vocabulary, TokenizerConfig(seq_len=12, keep="start"))
    assert "kept" not in start.decode(start.encode(d.chosen)[0])
