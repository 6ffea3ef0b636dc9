"""Every numeric flag is checked by the rule table before TensorFlow loads: a hostile value (NaN,
infinities, negative, zero, huge, not a number) is one ``UsageError`` line or argparse's one-line
exit 2, never another exception; consistent settings (heads divide width, memory) are checked too."""
from __future__ import annotations

import argparse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmcompress.cli import build_parser
from rmcompress.commands.train import train_config_from_args
from rmcompress.config import memory
from rmcompress.config.rules import COMMAND_RULES, check_args, flag_name
from rmcompress.config.schedule import split_finetune, step_plan
from rmcompress.config.training import TrainConfig, cli_fields
from rmcompress.errors import UsageError

HOSTILE = ["nan", "NaN", "inf", "-inf", "Infinity", "-1", "0", "-0.5", "1e308", "99999999999999999999", "abc",
           "1.5", "", "0x10", "true"]
NUMERIC_TRAIN_FLAGS = [flag for _, flag, kw in cli_fields() if kw.get("type") is not None
                       and getattr(kw["type"], "__name__", "") in ("number", "integer")]
BASE = ["train", "--task", "pointwise", "--data", "d.tsv", "--out", "o"]


def outcome(argv, capsys) -> str:
    """``"ok"``, or ``"refused"`` after exactly one line on stderr (argparse) or a UsageError."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        err = capsys.readouterr().err.strip()
        assert e.code == 2 and len(err.splitlines()) == 1 and "error:" in err, (argv, err)
        return "refused"
    try:
        if args.command == "train":
            train_config_from_args(args)
        else:
            check_args(args.command, vars(args))
    except UsageError as e:
        assert len(str(e).splitlines()) == 1, (argv, e)
        return "refused"
    return "ok"


def test_there_are_many_numeric_train_flags():
    assert len(NUMERIC_TRAIN_FLAGS) >= 25 and "--learning-rate" in NUMERIC_TRAIN_FLAGS


@pytest.mark.parametrize("flag", NUMERIC_TRAIN_FLAGS)
def test_non_finite_values_are_refused_for_every_train_flag(flag, capsys):
    for value in ("nan", "inf", "-inf", "abc"):
        assert outcome(BASE + [flag, value], capsys) == "refused", (flag, value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(st.sampled_from(NUMERIC_TRAIN_FLAGS),
                          st.one_of(st.sampled_from(HOSTILE), st.floats(allow_nan=True).map(repr),
                                    st.integers(-10**12, 10**12).map(str))), min_size=1, max_size=4))
def test_any_train_flag_values_are_accepted_or_refused_in_one_line(pairs, capsys):
    argv = BASE + [x for pair in pairs for x in pair]
    assert outcome(argv, capsys) in ("ok", "refused")


OTHER = {"shrink": ["shrink", "--model", "m", "--out", "o"],
         "compress": ["compress", "--model", "m", "--recipe", "light", "--data", "d.tsv", "--out", "o"],
         "export": ["export", "--model", "m", "--out", "o"],
         "evaluate": ["evaluate", "--model", "m", "--data", "d.tsv"],
         "import": ["import", "--model", "m.keras", "--vocab", "v.txt", "--task", "pointwise", "--out", "o"],
         "demo": ["demo"]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(sorted(OTHER)), data=st.data())
def test_other_commands_numeric_flags_are_accepted_or_refused_in_one_line(command, data, capsys):
    dest = data.draw(st.sampled_from(sorted(COMMAND_RULES[command])))
    value = data.draw(st.one_of(st.sampled_from(HOSTILE), st.floats(allow_nan=True).map(repr)))
    assert outcome(OTHER[command] + [flag_name(dest), value], capsys) in ("ok", "refused")


@pytest.mark.parametrize("command,flag,value", [("shrink", "--budget-flops", "nan"), ("shrink", "--budget-flops", "0"),
                                                ("shrink", "--budget-params", "1.5"),
                                                ("evaluate", "--latency-runs", "-1"),
                                                ("evaluate", "--max-examples", "0"),
                                                ("compress", "--latency-runs", "inf"), ("demo", "--seed", "-1")])
def test_other_commands_refuse_bad_numbers(command, flag, value, capsys):
    assert outcome(OTHER[command] + [flag, value], capsys) == "refused"


@pytest.mark.parametrize("flat,message", [
    (dict(learning_rate=float("nan")), "--learning-rate nan must be a finite number"),
    (dict(weight_decay=float("nan")), "--weight-decay nan must be a finite number"),
    (dict(flops_weight=float("inf")), "--flops-weight inf must be a finite number"),
    (dict(seq_len=0), "--seq-len 0 must be >= 1"),
    (dict(warmup_fraction=2.0), "--warmup-fraction 2.0 must be in [0, 1]"),
    (dict(patience=-1), "--patience -1 must be >= 0 (0 turns early stopping off)"),
    (dict(heads=0), "--heads 0 must be >= 1"),
    (dict(heads=3), "--heads 3 must divide --width 64"),
    (dict(vocab_size=3), "--vocab-size 3 must be >= 64"),
    (dict(seed=-1), "--seed -1 must be in [0, 2147483647]"),
    (dict(seed=2**31), "--seed 2147483648 must be in [0, 2147483647]"),
    (dict(width=16.0), "--width 16.0 must be an integer"),
    (dict(epochs=True), "--epochs True must be an integer"),
    (dict(dropout=1.0), "--dropout 1.0 must be in [0, 1)"),
    (dict(arch="cnn", kernel_sizes=[3, 40], seq_len=16), "--kernel-sizes 3,40: kernel_sizes=[3, 40] has a width above --seq-len 16"),
    (dict(backbone="bert_tiny_en_uncased", seq_len=2), "--seq-len 2 must be >= 3 with --backbone"),
])
def test_hostile_settings_are_one_line_usage_errors(flat, message):
    with pytest.raises(UsageError) as e:
        TrainConfig.from_flat(**flat)
    assert message in str(e.value) and len(str(e.value).splitlines()) == 1


def test_sequence_length_beyond_memory_is_refused_with_the_estimate():
    with pytest.raises(UsageError, match=r"^too large for this machine's .* of memory: one training step with "
                                         r"--seq-len 100000, --batch-size 64.* needs about .* TiB .*attention scores"):
        TrainConfig.from_flat(seq_len=100000)
    cfg = TrainConfig.from_flat(seq_len=512)
    with pytest.raises(UsageError, match="1.0 KiB of memory"):
        cfg._check_consistency(memory_limit=1024)


def test_memory_estimate_grows_with_the_square_of_the_sequence_for_attention():
    a = memory.estimate("transformer", 8, 128, 1000, 64, depth=2, heads=4, ffn=128)
    b = memory.estimate("transformer", 8, 256, 1000, 64, depth=2, heads=4, ffn=128)
    assert b.attention == 4 * a.attention == 4 * 4 * 8 * 2 * 3 * 4 * 128 * 128
    assert memory.estimate("bow", 8, 256, 1000, 64, hidden=16).attention == 0


def test_boundary_values_are_accepted():
    cfg = TrainConfig.from_flat(warmup_fraction=1.0, patience=0, seed=2**31 - 1, vocab_size=64, heads=64,
                                val_fraction=0.0, max_steps=1, center_coefficient=0.0)
    assert (cfg.optim.patience, cfg.data.seed, cfg.tokenizer.vocab_size) == (0, 2**31 - 1, 64)


def test_max_steps_is_exact():
    for n, batch, steps in [(270, 32, 20), (270, 32, 23), (300, 32, 6), (10, 64, 7), (10**5, 32, 5), (50, 8, 1)]:
        per_epoch, epochs = step_plan(n, batch, 1, steps)
        assert per_epoch * epochs == steps, (n, batch, steps)
    assert step_plan(270, 32, 1, 20) == (10, 2)  # an epoch stays about one pass (9 batches)
    assert step_plan(300, 32, 3) == (10, 3)
    for per_epoch, epochs, ft in [(10, 2, 6), (7, 3, 6), (5, 4, 3)]:
        gated, ft_steps = split_finetune(per_epoch, epochs, ft)
        assert gated * epochs + ft_steps == per_epoch * epochs and abs(ft_steps - ft) < epochs


def test_argparse_errors_are_one_line(capsys):
    for argv in (BASE + ["--arch", "foo"], BASE + ["--learning-rate", "nan"], ["train"]):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(argv)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1, err
        assert "usage:" not in err and "(see rmcompress train --help)" in err


def test_number_converters_refuse_non_finite_text():
    from rmcompress.config.rules import integer, number

    for text in ("nan", "inf", "-Infinity", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            number(text)
    assert number("1e-3") == 1e-3 and integer("12") == 12
    with pytest.raises(argparse.ArgumentTypeError):
        integer("1.5")
