"""TrainConfig: sections with one declaration per setting, the CLI built from them, the flat form."""
import re
from dataclasses import fields

import pytest

from rmcompress.config.training import SECTIONS, TrainConfig, cli_fields, flag_of, flat_index, flat_name
from rmcompress.errors import UsageError


def _train_help(capsys) -> str:
    from rmcompress.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare on single spaces


def test_help_prints_every_default(capsys):
    """Every setting's entry in ``rmcompress train --help`` ends with its default."""
    from rmcompress.cli import build_parser

    text = _train_help(capsys)
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    actions = {opt: a for a in sub.choices["train"]._actions for opt in a.option_strings}
    declared = [(flag, kw) for _, flag, kw in cli_fields()]
    assert len(declared) >= 50
    for flag, kw in declared:
        help_text = " ".join(actions[flag].help.replace("%%", "%").split())
        assert flag in text and help_text in text, flag
        if not kw.get("required"):
            default = re.search(r"\[default: ([^\]]+)\]$", help_text)
            assert default, (flag, help_text)
            if "default_text" not in kw and not isinstance(kw.get("default"), (bool, list, type(None))):
                assert default.group(1) == str(kw["default"]), flag
    assert "[default: 64]" in text and "[default: transformer]" in text and "[default: 3,4,5]" in text


def test_cli_flags_and_defaults_come_from_the_declarations():
    from rmcompress.commands.train import train_config_from_args
    from rmcompress.cli import build_parser

    args = build_parser().parse_args(["train", "--data", "d.csv", "--task", "pointwise", "--out", "o"])
    assert train_config_from_args(args) == TrainConfig()
    args = build_parser().parse_args(["train", "--data", "d.csv", "--task", "pairwise", "--out", "o",
                                      "--split", "disjoint", "--no-lowercase", "--no-shrink", "--kernel-sizes", "1,2",
                                      "--gate-learning-rate", "0.1", "--distill-weight", "0.25", "--arch", "cnn",
                                      "--text-column", "review", "--teacher", "t", "--seq-len", "32"])
    cfg = train_config_from_args(args)
    assert (cfg.task, cfg.data.split_mode, cfg.tokenizer.lowercase, cfg.gates.shrink) == ("pairwise", "disjoint",
                                                                                          False, False)
    assert (cfg.arch.name, cfg.arch.kernel_sizes, cfg.gates.learning_rate, cfg.distill.weight) == ("cnn", [1, 2],
                                                                                                    0.1, 0.25)
    assert (cfg.data.text_column, cfg.distill.teacher, cfg.tokenizer.seq_len) == ("review", "t", 32)


def test_from_flat_maps_names_onto_sections_and_refuses_unknown_ones():
    cfg = TrainConfig.from_flat(task="pairwise", arch="cnn", width=16, split_mode="disjoint", budget_flops=0.5,
                                gate_learning_rate=0.2, distill_weight=0.3, backbone_match="keras")
    assert (cfg.arch.name, cfg.arch.width, cfg.data.split_mode) == ("cnn", 16, "disjoint")
    assert (cfg.gates.budget_flops, cfg.gates.learning_rate, cfg.gates.active) == (0.5, 0.2, True)
    assert (cfg.distill.weight, cfg.source.backbone_match) == (0.3, "keras")
    with pytest.raises(UsageError, match=r"unknown setting 'widht' \(did you mean 'width'\?\)") as e:
        TrainConfig.from_flat(widht=16)
    assert "\n" not in str(e.value)


def test_flat_form_round_trips_and_old_saved_configs_load():
    cfg = TrainConfig.from_flat(task="pairwise", arch="bow", hidden=8, flops_weight=0.5, seed=3)
    flat = cfg.flat_dict()
    assert set(flat) == set(flat_index()) and flat["arch"] == "bow" and flat["gate_init_spread"] == 2.0
    assert TrainConfig.from_dict(flat) == cfg == TrainConfig.from_dict(cfg.to_dict())
    # a model directory's saved config: the flat dict, maybe with keys this version does not know
    old = {**flat, "some_retired_setting": 1}
    assert TrainConfig.from_dict(old) == cfg


def test_every_setting_has_one_declaration():
    names = [flat_name(f) for cls in SECTIONS.values() for f in fields(cls)]
    names += [flat_name(f) for f in fields(TrainConfig) if f.name not in SECTIONS]
    assert len(names) == len(set(names))
    flags = [flag for _, flag, _ in cli_fields()]
    assert len(flags) == len(set(flags))
    for cls in SECTIONS.values():
        for f in fields(cls):
            assert f.metadata["help"], flag_of(f)


@pytest.mark.parametrize("flat, message", [
    (dict(epochs=0), "--epochs 0 must be >= 1"),
    (dict(batch_size=0), "--batch-size 0 must be >= 1"),
    (dict(budget_flops=1.5), "--budget-flops 1.5 must be a fraction in (0, 1]"),
    (dict(flops_weight=-1.0), "--flops-weight -1.0 must be >= 0"),
    (dict(budget_warmup=0.8, budget_delay=0.5), "--budget-delay 0.5 must be in [0, 1 - budget_warmup]"),
    (dict(loss="hinge"), "--loss 'hinge' unknown; allowed: bce, mse, mae"),
    (dict(backbone="b", init="i"), "--backbone and --init are exclusive"),
    (dict(unlabeled="u.csv"), "--unlabeled needs --teacher"),
    (dict(gate_width=True, teacher="t", distill_features=1.0), "--gate-width narrows the pooled features"),
])
def test_bad_values_are_one_line_usage_errors(flat, message):
    with pytest.raises(UsageError) as e:
        TrainConfig.from_flat(**flat)
    assert message in str(e.value) and "\n" not in str(e.value)
