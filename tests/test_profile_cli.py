"""``python -m threshnet.profile``: output contents and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from threshnet.cli import run_cli
from threshnet.presets import THRESHNET79
from threshnet.profile import PROG, main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threshnet.profile", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_json_output_has_the_promised_keys() -> None:
    result = _run("--preset", "threshnet79", "--input-size", "224", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["params"] == 14_371_858
    assert round(report["macs"] / 1e9, 4) == 3.4231
    assert report["flops"] == 2 * report["macs"]
    assert report["input_size"] == 224
    assert [stage["kind"] for stage in report["stages"]] == ["dense"] * 3 + ["harmonic"] * 2
    assert report["published"]["params_m"] == 14.31


def test_table_with_latency_from_a_config_file(tmp_path: Path) -> None:
    path = THRESHNET79.save(tmp_path / "c.json")
    result = _run(
        "--config", str(path), "--latency", "--repeats", "5", "--warmup", "1", "--threads", "1"
    )
    assert result.returncode == 0, result.stderr
    assert "14,371,858" in result.stdout
    assert "ms median" in result.stdout
    assert "threads 1" in result.stdout


def test_json_latency_records_its_settings(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--preset",
            "threshnet28",
            "--latency",
            "--json",
            "--repeats",
            "4",
            "--warmup",
            "1",
            "--batch-size",
            "2",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    latency = json.loads(capsys.readouterr().out)["latency"]
    assert latency["batch_size"] == 2 and latency["threads"] == 1 and latency["repeats"] == 4
    assert latency["per_image_ms"] == pytest.approx(latency["median_ms"] / 2)
    assert latency["device"] == "cpu" and latency["dtype"] == "float32"


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.json"
    path.write_text(text)
    return str(path)


BAD_ARGS = [
    (lambda tmp: [], "one of the arguments --preset --config is required"),
    (lambda tmp: ["--preset", "resnet50"], "invalid choice: 'resnet50'"),
    (lambda tmp: ["--preset", "threshnet79", "--input-size", "0"], "expected a positive integer"),
    (lambda tmp: ["--preset", "threshnet79", "--input-size", "16"], "would collapse it"),
    (lambda tmp: ["--preset", "threshnet79", "--device", "tpu"], "unknown device 'tpu'"),
    (lambda tmp: ["--preset", "threshnet79", "--device", "cuda:0"], "cuda"),
    (lambda tmp: ["--preset", "threshnet79", "--latency", "--repeats", "2"], "repeats must be"),
    (lambda tmp: ["--config", str(tmp / "missing.json")], "cannot read config"),
    (lambda tmp: ["--config", _write(tmp, "{not json")], "not valid JSON"),
    (
        lambda tmp: [
            "--config",
            _write(tmp, '{"schema_version": 1, "threshold": 0, "stages": [], "hack": 1}'),
        ],
        "unknown key(s) 'hack'",
    ),
    (
        lambda tmp: [
            "--config",
            _write(tmp, json.dumps({**THRESHNET79.to_dict(), "threshold": 7})),
        ],
        "threshold=7 is out of range",
    ),
]


@pytest.mark.parametrize(("make_args", "message"), BAD_ARGS)
def test_user_errors_are_one_line(
    make_args, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = run_cli(PROG, main, make_args(tmp_path))
    except SystemExit as exit_:  # argparse exits directly
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"{PROG}: error: ")
    assert message in lines[0]


def test_user_error_in_a_real_process_has_no_traceback() -> None:
    result = _run("--preset", "threshnet79", "--input-size", "8")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
