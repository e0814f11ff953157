"""The command line: --help everywhere, and every typed error as one line with a non-zero exit."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from organfed.shared.cli.commands import COMMANDS
from organfed.shared.cli.main import build_parser

ORGANFED = str(Path(sys.executable).parent / "organfed")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ORGANFED, *args], capture_output=True, text=True, timeout=300)


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append(prefix + (name,))
                paths += command_paths(sub, prefix + (name,))
    return paths


def every_command_path() -> list[tuple[str, ...]]:
    """Every command and subcommand, from the parser of each command's own module."""
    return [path for name in COMMANDS for path in command_paths(build_parser(name)) if path[0] == name]


@pytest.mark.parametrize("path", every_command_path(), ids=" ".join)
def test_every_command_has_help(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser(path[0]).parse_args([*path, "--help"])
    assert exit_info.value.code == 0
    assert "usage: organfed" in capsys.readouterr().out


def assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_missing_model_dir(tmp_path):
    assert_one_line_error(run("extract", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o.safetensors")), "not a directory")


def test_pickle_organ(tmp_path):
    (tmp_path / "organ.bin").write_bytes(b"\x80\x04junk")
    assert_one_line_error(run("inspect", str(tmp_path / "organ.bin")), "never unpickles")


def test_bad_layer_range_is_a_usage_error(tiny_models, tmp_path):
    result = run("extract", "--model", str(tiny_models["gpt2"]), "--layers", "5:2", "--out", str(tmp_path / "o.safetensors"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "5:2" in result.stderr


def test_extract_inspect_transplant_perplexity(tiny_models, tmp_path):
    organ = tmp_path / "o.safetensors"
    assert run("extract", "--model", str(tiny_models["llama"]), "--out", str(organ)).returncode == 0
    inspected = run("inspect", "--verify", str(organ))
    assert inspected.returncode == 0 and '"family": "llama"' in inspected.stdout
    out = tmp_path / "out"
    result = run("transplant", "--model", str(tiny_models["llama"]), "--organ", str(organ), "--organ", f"{organ}@0",
                 "--mode", "insert", "--position", "6", "--out", str(out))
    assert result.returncode == 0, result.stderr
    data = tmp_path / "text.txt"
    data.write_text("organ transplantation for language models\n" * 50)
    ppl = run("perplexity", "--model", str(out), "--data", str(data), "--block-size", "64")
    assert ppl.returncode == 0 and '"perplexity"' in ppl.stdout
    overlapping = run("transplant", "--model", str(tiny_models["llama"]), "--organ", f"{organ}@1", "--organ", f"{organ}@2",
                      "--out", str(tmp_path / "o2"))
    assert_one_line_error(overlapping, "overlaps")


@pytest.mark.parametrize("argv,needle", [
    (["perplexity", "--model", "m", "--data", "d", "--max-tokens", "-5"], "--max-tokens: must be >= 1, got -5"),
    (["perplexity", "--model", "m", "--data", "d", "--stride", "0"], "--stride: must be >= 1, got 0"),
    (["tiny-model", "--family", "gpt2", "--out", "o", "--layers", "0"], "--layers: must be >= 1"),
    (["train", "--model", "m", "--data", "d", "--out", "o", "--steps", "ten"], "'ten' is not an integer"),
    (["transplant", "--model", "m", "--organ", "o", "--out", "x", "--position", "-1"], "--position: must be >= 0"),
    (["demo", "--rounds", "0"], "--rounds: must be >= 1"),
])
def test_counts_out_of_range_are_usage_errors(argv, needle, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser(argv[0]).parse_args(argv)
    assert exit_info.value.code == 2 and needle in capsys.readouterr().err


def test_tiny_model_with_an_unusable_hidden_size(tmp_path):
    assert_one_line_error(run("tiny-model", "--family", "llama", "--hidden", "12", "--out", str(tmp_path / "t")), "multiple of 8")


def test_the_command_table_names_what_each_module_registers():
    for name, entry in COMMANDS.items():
        registered = {path[0] for path in command_paths(build_parser(name)) if len(path) == 1}
        assert registered == {n for n, e in COMMANDS.items() if e.module == entry.module}, entry.module
        sub = next(a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction))
        assert {a.dest: a.help for a in sub._choices_actions}[name] == entry.summary


def python_probe(script: str) -> str:
    """Run ``script`` in a fresh interpreter (a clean ``sys.modules``); its stdout, once it exits with 0."""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_overview_lists_every_command_without_importing_any():
    out = python_probe(
        "import sys\n"
        "from organfed.shared.cli.main import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('organfed.shared.cli.') and m.endswith(('_cmd', '_cmds')))\n"
        "print('loaded:', loaded)\n"
    )
    assert "loaded: []" in out
    words = " ".join(out.split())  # argparse wraps the summaries
    for name, entry in COMMANDS.items():
        assert name in out and entry.summary in words


def test_commands_that_need_no_model_run_without_importing_torch(tmp_path):
    out = python_probe(
        "import sys\n"
        "from organfed.shared.cli.main import main\n"
        f"assert main(['keys', 'new', '--name', 'site', '--out', {str(tmp_path / 'k')!r}]) == 0\n"
        f"assert main(['trust', 'enrol', {str(tmp_path / 't')!r}, {str(tmp_path / 'k' / 'identity.json')!r}]) == 0\n"
        f"assert main(['federation', 'tls', '--out', {str(tmp_path / 'tls')!r}, '--host', 'localhost']) == 0\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
    )
    assert "torch imported: False" in out
