"""Every command's --help: a help text and a default for every flag, plain text; and the
``threshnet-search`` console script dispatching to the ``python -m`` modules."""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from search.console import COMMANDS, PROG, main
from threshnet.cli import ArgumentParser


def _parser_of(module_name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[ArgumentParser, str]:
    """The parser a command builds for --help, and the help it prints."""
    seen: list[ArgumentParser] = []
    original = ArgumentParser.format_help

    def format_help(self: ArgumentParser) -> str:
        seen.append(self)
        return original(self)

    monkeypatch.setattr(ArgumentParser, "format_help", format_help)
    module = importlib.import_module(module_name)
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    return seen[-1], original(seen[-1])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_has_help_and_the_help_is_plain_text(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    parser, text = _parser_of(COMMANDS[command][0], monkeypatch)
    bare = [
        "/".join(action.option_strings)
        for action in parser._actions  # argparse keeps no public list of a parser's flags
        if action.option_strings
        and not isinstance(action, argparse._HelpAction)
        and not (action.help and action.help.strip())
    ]
    assert bare == [], f"{command}: flags without help: {bare}"
    assert "``" not in text and not re.search(r":(func|mod|class):", text)


def test_the_help_states_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    _, text = _parser_of("threshnet.profile", monkeypatch)
    assert "of the timed model (default: float32)" in " ".join(text.split())  # --dtype
    _, text = _parser_of("search.run", monkeypatch)
    flat = " ".join(text.split())
    stated_defaults = (
        "finished trials wanted (200; with --smoke 6)",
        "--epochs EPOCHS per trial (2; with --smoke 3)",
        "--lr LR peak learning rate (0.1; with --smoke 0.05)",
        "--batch-size BATCH_SIZE (128; with --smoke 64)",
        "--out OUT parent of study directories (runs)",
    )
    for stated in stated_defaults:
        assert stated in flat


def test_the_console_script_runs_each_module(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2 and "usage: threshnet-search <command>" in capsys.readouterr().err
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"python -m {module}" in listed for module, _ in COMMANDS.values())
    assert main(["search"]) == 2
    assert "unknown command 'search'; choose from run, report" in capsys.readouterr().err
    assert main(["report", str(Path("no-such-study"))]) == 2
    assert "studies.report: error: no-such-study is not a directory" in capsys.readouterr().err


def test_the_installed_console_script_is_on_the_path() -> None:
    script = shutil.which(PROG, path=str(Path(sys.executable).parent))
    assert script is not None, "pip install -e . installs the threshnet-search script"
    result = subprocess.run(
        [script, "profile", "--preset", "threshnet28"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "10,180,718" in result.stdout or "10180718" in result.stdout
