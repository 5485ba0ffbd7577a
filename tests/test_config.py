"""TOML configs: layout, types, precedence of command-line overrides, clear errors, saved configs."""

from __future__ import annotations

import json
from dataclasses import asdict, fields

import pytest

from snnexit.cli import build_parser, main
from snnexit.cli.config_args import settings_from_args
from snnexit.errors import SnnexitError
from snnexit.runs.config_file import load_config, save_config, settings_from_dict
from snnexit.runs.settings import FitSettings, RunConfig, Settings, TraceSettings


@pytest.fixture(autouse=True)
def _away_from_runs(tmp_path, monkeypatch):
    """The default --out is runs/default, relative: a run folder left by ``make run`` in the
    working directory would lend its settings to the stages resolved here."""
    monkeypatch.chdir(tmp_path)

STAGE_COMMANDS = ["run", "train", "convert", "trace", "fit", "evaluate", "report"]


def write(tmp_path, text: str, name: str = "c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_toml_file_sets_run_fields_and_stage_tables(tmp_path):
    path = write(tmp_path, """
        dataset = "digits"
        T = 12
        lr = 1          # an integer is fine where a number is expected
        width = 8
        [trace]
        batch_size = 100
        [fit]
        target = "max_drop"
        eps = 0.01
    """.replace("\n        ", "\n"))
    s = load_config(path)
    assert (s.run.dataset, s.run.T, s.run.width) == ("digits", 12, 8)
    assert s.run.lr == 1.0 and isinstance(s.run.lr, float)
    assert s.trace == TraceSettings(batch_size=100)
    assert s.fit == FitSettings(target="max_drop", eps=0.01)
    defaults = RunConfig()
    for key in ("model", "epochs", "seed", "levels", "converter", "batch_size"):
        assert getattr(s.run, key) == getattr(defaults, key), key


def test_no_file_gives_the_defaults():
    s = load_config()
    assert s.run == RunConfig() and s.trace == TraceSettings() and s.fit == FitSettings()


@pytest.mark.parametrize("command", STAGE_COMMANDS)
def test_command_line_flags_override_the_file_even_when_equal_to_the_default(tmp_path, command):
    path = write(tmp_path, 'dataset = "digits"\nT = 12\nseed = 5\nepochs = 2\n')
    default_T = RunConfig().T
    args = build_parser().parse_args([command, "--config", str(path), "--T", str(default_T), "--epochs", "3"])
    s = settings_from_args(args)
    assert s.run.T == default_T  # given on the command line: wins although it equals the default
    assert s.run.epochs == 3
    assert s.run.seed == 5 and s.run.dataset == "digits"  # not given: the file's


def test_stage_flags_override_their_tables(tmp_path):
    path = write(tmp_path, "[fit]\nthreshold = 0.5\n[trace]\nbatch_size = 7\n")
    s = settings_from_args(build_parser().parse_args(["fit", "--config", str(path), "--threshold", "0.9"]))
    assert s.fit.threshold == 0.9 and s.trace.batch_size == 7
    s = settings_from_args(build_parser().parse_args(["trace", "--config", str(path), "--trace-batch-size", "3"]))
    assert s.trace.batch_size == 3 and s.fit.threshold == 0.5


@pytest.mark.parametrize("command", STAGE_COMMANDS)
def test_every_run_field_has_a_flag(command):
    """Fields added to RunConfig later get a flag on every stage without further work."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    dests = {a.dest for a in sub._actions}
    missing = [f.name for f in fields(RunConfig) if f.name not in dests and f.name != "extra"]
    assert missing == []


@pytest.mark.parametrize("text,message", [
    ("epoch = 3", "unknown config key 'epoch'. Known: dataset, model, T, epochs"),
    ("[fit]\ntreshold = 0.9", "unknown config key 'fit.treshold'. Known: fit.target, fit.threshold"),
    ("[train]\nepochs = 3", "unknown config key 'train'"),
    ('T = "12"', "config key 'T' must be an integer, got str '12'"),
    ("T = 1.5", "config key 'T' must be an integer, got float 1.5"),
    ("epochs = true", "config key 'epochs' must be an integer, got bool True"),
    ('lr = "fast"', "config key 'lr' must be a number, got str 'fast'"),
    ("progress = 1", "config key 'progress' must be a boolean"),
    ("width = 8.0", "config key 'width' must be an integer"),
    ("fit = 3", "config key 'fit' must be a table ([fit])"),
    ("[fit]\ntemperature = -1.0", "temperature must be a positive number"),
    ('[fit]\ntarget = "max_drop"', "config table [fit]: eps must be"),
    ('[fit]\ntarget = "fastest"', "Unknown target 'fastest'"),
    ("[trace]\nbatch_size = 0", "'trace.batch_size' must be >= 1"),
    ("lr = -0.1", "'lr' must be a positive number"),
    ("T = 0", "T must lie in 1..100000"),
    ('dataset = "cifar11"', "Unknown dataset 'cifar11'"),
    ("T = [1, 2]", "config key 'T' must be an integer, got list"),
    ("T = 3\nT = 4", "invalid TOML"),
    ("T = ", "invalid TOML"),
])
def test_bad_configs_name_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SnnexitError) as info:
        load_config(path)
    assert message in str(info.value)


def test_unreadable_or_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(SnnexitError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00T = 3")
    with pytest.raises(SnnexitError, match="cannot read it as UTF-8"):
        load_config(tmp_path / "bin.toml")
    with pytest.raises(SnnexitError, match="invalid JSON"):
        load_config(write(tmp_path, "{T: 3", "c.json"))
    with pytest.raises(SnnexitError, match="a config must be a table"):
        load_config(write(tmp_path, "[1, 2]", "c.json"))


def test_cli_reports_config_errors_with_exit_code_2(tmp_path, capsys):
    path = write(tmp_path, "epoch = 3\n")
    for command in ("run", "fit"):
        assert main([command, "--config", str(path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert "unknown config key 'epoch'" in err and "Known:" in err and "Traceback" not in err


def test_saved_config_loads_back_to_the_same_settings(tmp_path):
    s = load_config(write(tmp_path, 'dataset = "digits"\nT = 9\nwidth = 8\n[fit]\nthreshold = 0.75\n'))
    s.run.extra = {"note": "kept"}
    save_config(tmp_path / "config.fit.json", s, "fit")
    saved = json.loads((tmp_path / "config.fit.json").read_text())
    assert saved["format"] == "snnexit-config" and saved["stage"] == "fit"
    assert saved["fit"]["threshold"] == 0.75 and saved["width"] == 8
    again = load_config(tmp_path / "config.fit.json")
    assert again == s
    assert settings_from_dict(s.to_dict()) == s


def test_overrides_of_none_are_ignored_and_tables_merge(tmp_path):
    path = write(tmp_path, "T = 9\n[fit]\nthreshold = 0.5\n")
    s = load_config(path, {"T": None, "fit": {"temperature": 2.0, "threshold": None}})
    assert s.run.T == 9 and s.fit == FitSettings(threshold=0.5, temperature=2.0)


def test_settings_round_trip_through_dicts():
    s = Settings()
    assert asdict(s.run) == {k: v for k, v in s.to_dict().items() if k not in ("trace", "fit", "certify")}


def test_a_converter_refuses_an_activation_it_does_not_take_before_training():
    """Each converter declares the ANN activations it converts (register_converter): a mismatch is
    refused when the settings are checked, not after training."""
    from snnexit.convert import CONVERTERS
    from snnexit.errors import SnnexitError
    from snnexit.quant import QUANTIZERS

    for converter in CONVERTERS.names():
        takes = CONVERTERS.get(converter).quantizers
        for quantizer in QUANTIZERS.names():
            config = RunConfig(dataset="digits", converter=converter, quantizer=quantizer)
            if quantizer in takes:
                config.validate()
            else:
                with pytest.raises(SnnexitError, match=f"converter {converter!r} converts ANNs with"):
                    config.validate()
