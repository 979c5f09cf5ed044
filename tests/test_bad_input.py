"""Bad input across the CLIs: one clear line, exit status 2, existing results untouched."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_archive, png_header, write_image_folder

from search import run as search_run
from studies import export as studies_export
from studies import remeasure as studies_remeasure
from studies import report as studies_report
from studies import schema
from threshnet import profile as threshnet_profile
from threshnet import train as threshnet_train
from threshnet.cli import run_cli
from threshnet.presets import THRESHNET79

CLIS = {
    "search.run": search_run.main,
    "studies.report": studies_report.main,
    "studies.export": studies_export.main,
    "studies.remeasure": studies_remeasure.main,
    "threshnet.train": threshnet_train.main,
    "threshnet.profile": threshnet_profile.main,
}


# --space files under which every trial would fail: name -> TOML
DOOMED_SPACES = {
    "space-stem": 'stem = "abc"\n',
    "space-bottleneck": "bottleneck = -5\n",
    "space-depth": "[[stages]]\ndepth = [0, 4]\n",
    "space-transition": "[[stages]]\ntransition = [0, 64, 32]\n",
    "space-scalar": "[[stages]]\ntransition = 0\n",
}


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """A data folder, an existing study with results, a few files to point CLIs at."""
    write_image_folder(tmp_path / "data", per_class=6)
    (tmp_path / "empty").mkdir()
    (tmp_path / "flat" / "train").mkdir(parents=True)
    (tmp_path / "flat" / "train" / "a.png").write_bytes(b"x")
    study = tmp_path / "runs" / "existing"
    study.mkdir(parents=True)
    settings = search_run.DEFAULT_SETTINGS.to_dict()
    schema.write_manifest(
        study,
        {"name": "existing", "study_name": "existing", "settings": settings, "runs": []},
    )
    (study / "trials.csv").write_text("number,state\n0,COMPLETE\n")
    (tmp_path / "runs" / "other").mkdir()
    (tmp_path / "runs" / "other" / "manifest.json").write_text('{"kind": "something-else"}')
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "manifest.json").write_text((study / "manifest.json").read_text())
    (tmp_path / "half" / "trials.csv").write_text('number,state,val_acc\n0,COMPLETE,"0.5\n1,CO')
    (tmp_path / "a-file").write_text("not a directory")
    huge = {**THRESHNET79.to_dict()}
    huge["stages"] = [dict(s, depth=10**9) for s in huge["stages"]]
    (tmp_path / "huge.json").write_text(json.dumps(huge))
    wrong = {**THRESHNET79.to_dict(), "threshold": "3"}
    (tmp_path / "wrong-type.json").write_text(json.dumps(wrong))
    (tmp_path / "pickle.json").write_bytes(b"\x80\x04\x95 cos\nsystem\n")
    shutil.copytree(tmp_path / "data", tmp_path / "renamed")
    (tmp_path / "renamed" / "test" / "cat").rename(tmp_path / "renamed" / "test" / "kitten")
    shutil.copytree(tmp_path / "data", tmp_path / "extra")
    shutil.copytree(tmp_path / "data" / "test" / "cat", tmp_path / "extra" / "test" / "zebra")
    for name, text in DOOMED_SPACES.items():
        (tmp_path / f"{name}.toml").write_text(text)
    (tmp_path / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    shutil.copytree(tmp_path / "data", tmp_path / "bomb")
    (tmp_path / "bomb" / "train" / "cat" / "9999.png").write_bytes(png_header(30_000, 30_000))
    shutil.copytree(tmp_path / "data", tmp_path / "mixed")
    (tmp_path / "mixed" / "train" / "dog" / "9999.png").write_bytes(png_header(64, 64))
    make_archive(tmp_path / "data", tmp_path / "good.tar.xz")
    archive = (tmp_path / "good.tar.xz").read_bytes()
    (tmp_path / "truncated.tar.xz").write_bytes(archive[: len(archive) // 2])
    middle = len(archive) // 2
    (tmp_path / "corrupt.tar.xz").write_bytes(
        archive[:middle]
        + bytes(b ^ 0x5A for b in archive[middle : middle + 64])
        + archive[middle + 64 :]
    )
    (tmp_path / "train-out").mkdir()
    (tmp_path / "train-out" / "checkpoint.pt").write_bytes(b"PK\x03\x04 not ours")
    return tmp_path


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "cache" not in path.parts and path.name != ".run.lock"
    }


def _search(*args: str) -> Callable[[Path], list[str]]:
    return lambda w: ["--out", str(w / "runs"), "--cache-dir", str(w / "cache"), *args]


CASES = [
    ("search.run", _search("--trials", "0"), "expected a positive integer"),
    ("search.run", _search("--trials", "-5"), "expected a positive integer"),
    ("search.run", _search("--sampler", "cmaes"), "invalid choice: 'cmaes'"),
    ("search.run", _search("--num-cpus", "1.5"), "expected a positive integer, got '1.5'"),
    ("search.run", _search("--cpus-per-trial", "0"), "expected a finite positive number"),
    ("search.run", _search("--gpus-per-trial", "1", "--smoke"), "needs a GPU"),
    ("search.run", _search("--scheduler", "asha"), "invalid choice: 'asha'"),
    ("search.run", _search("--simulate", "bogus"), "invalid choice: 'bogus'"),
    (
        "search.run",
        _search("--simulate", "--simulate-seconds", "abc"),
        "expected MEAN or MEAN,SPREAD in seconds, got 'abc'",
    ),
    ("search.run", _search("--simulate", "--simulate-seconds", "1,5"), "spread <= mean"),
    ("search.run", _search("--simulate", "--simulate-seconds", "nan"), "MEAN or MEAN,SPREAD"),
    ("search.run", _search("--simulate-seconds", "2"), "give both"),
    (
        "search.run",
        _search("--simulate", "--baselines", "all"),
        "a simulated study (--simulate) has nothing to compare them with",
    ),
    (
        "search.run",
        _search("--name", "existing", "--simulate"),
        "created with other settings (simulation: None -> ",
    ),
    ("search.run", _search("--reduction-factor", "1"), "expected a number above 1"),
    (
        "search.run",
        lambda w: [
            *_search("--smoke", "--name", "n0", "--scheduler", "mo-asha", "--epochs", "1")(w),
            *("--data-dir", str(w / "data")),
        ],
        "--scheduler mo-asha stops trials at epoch rungs below the full budget; with "
        "--epochs 1 there is none",
    ),
    (
        "search.run",
        lambda w: [
            *_search("--smoke", "--name", "n-batch", "--batch-size", "100000000")(w),
            *("--data-dir", str(w / "data")),
        ],
        "is larger than the",
    ),
    (
        "search.run",
        lambda w: [*_search("--smoke", "--name", "n1")(w), "--data-dir", str(w / "missing")],
        "does not exist",
    ),
    (
        "search.run",
        lambda w: [*_search("--smoke", "--name", "n2")(w), "--data-dir", str(w / "empty")],
        "no 'train' folder",
    ),
    (
        "search.run",
        lambda w: [*_search("--smoke", "--name", "n3")(w), "--data-dir", str(w / "flat")],
        "class folder(s), need 2",
    ),
    (
        "search.run",
        lambda w: ["--out", str(w / "a-file"), "--smoke"],
        "cannot write the study directory",
    ),
    ("search.run", _search("--name", "../escape"), "must be a plain, non-empty directory name"),
    ("search.run", _search("--name", "other"), "is not a threshnet-search study directory"),
    (
        "search.run",
        lambda w: ["--out", str(w), "--name", "data"],
        "exists and is not a threshnet-search study directory",
    ),
    (
        "search.run",
        _search("--name", "existing", "--epochs", "9"),
        "was created with other settings (train.epochs: 2 -> 9)",
    ),
    (
        "search.run",
        _search("--name", "existing", "--storage", "sqlite:////nonexistent/x.db"),
        "omit --storage to resume it",
    ),
    (
        "search.run",
        lambda w: [
            *_search("--smoke", "--name", "n4")(w),
            "--data-dir",
            str(w / "data"),
            "--val-size",
            "500",
        ],
        "validation size 500",
    ),
    (
        "search.run",
        lambda w: [*_search("--smoke", "--name", "n5")(w), "--space", str(w / "huge.json")],
        "not valid TOML",
    ),
    *[
        (
            "search.run",
            lambda w, flags=flags: [*_search("--smoke", "--name", "doomed")(w), *flags],
            message,
        )
        for flags, message in [
            (["--input-size", "8"], "cannot run at --input-size 8"),
            (["--latency-input-size", "12"], "cannot run at --latency-input-size 12"),
            (["--latency-repeats", "2"], "repeats must be an integer >= 3"),
            (["--weight-decay", "inf"], "expected a finite number >= 0, got inf"),
            (["--lr", "nan"], "expected a finite positive number, got nan"),
        ]
    ],
    *[
        (
            "search.run",
            lambda w, name=name: [
                *_search("--smoke", "--name", "doomed")(w),
                "--space",
                str(w / f"{name}.toml"),
            ],
            message,
        )
        for name, message in [
            ("space-stem", "stem must be two widths"),
            ("space-bottleneck", "bottleneck=-5 is out of range"),
            ("space-depth", "stages[0].depth=0 is out of range"),
            ("space-transition", "stages[0].transition=0 is out of range"),
            ("space-scalar", "stages[0].transition: expected [low, high]"),
        ]
    ],
    *[
        (
            cli,
            lambda w, cli=cli, data=data: [
                *(
                    _search("--smoke", "--name", "mismatch")(w)
                    if cli == "search.run"
                    else ["--preset", "threshnet28", "--cache-dir", str(w / "cache")]
                ),
                "--data-dir",
                str(w / data),
            ],
            message,
        )
        for cli in ("search.run", "threshnet.train")
        for data, message in [
            ("renamed", "other class folders than"),
            ("extra", "(missing: none; extra: zebra)"),
        ]
    ],
    ("search.run", _search("--smoke", "--name", ""), "must be a plain, non-empty directory"),
    (
        "search.run",
        lambda w: [
            *_search("--smoke", "--name", "n8")(w),
            "--address",
            f"127.0.0.1:{closed_port()}",
        ],
        "cannot reach the Ray cluster at 127.0.0.1:",
    ),
    ("search.run", _search("--smoke", "--name", "x" * 300), "a directory name holds at most"),
    *[
        (
            "search.run",
            lambda w, cache=cache: [
                "--out",
                str(w / "runs"),
                "--smoke",
                "--name",
                "n6",
                "--data-dir",
                str(w / "data"),
                "--cache-dir",
                cache(w),
            ],
            "cannot write the cache directory",
        )
        for cache in (lambda w: str(w / "a-file"), lambda w: "/proc/no-such-cache")
    ],
    *[
        (
            "search.run",
            lambda w, data=data: [
                *_search("--smoke", "--name", "n7")(w),
                "--data-dir",
                str(w / data),
            ],
            message,
        )
        for data, message in [
            ("bomb", "cannot decode image"),
            ("mixed", "is 64x64 but earlier images are 32x32"),
            ("truncated.tar.xz", "cannot extract"),
            ("corrupt.tar.xz", "cannot extract"),
        ]
    ],
    *[
        (cli, lambda w: ["--config", str(w / "nested.json")], "nested too deeply")
        for cli in ("threshnet.profile", "threshnet.train")
    ],
    (
        "threshnet.profile",
        lambda w: ["--preset", "threshnet28", "--latency", "--threads", "100000"],
        "this machine's CPUs",
    ),
    (
        "threshnet.profile",
        lambda w: ["--preset", "threshnet28", "--latency", "--batch-size", "100000000"],
        "use a smaller batch",
    ),
    (
        "studies.report",
        lambda w: [str(w / "runs" / "existing"), "--reference", "nan", "1"],
        "expected a finite number, got nan",
    ),
    ("studies.report", lambda w: [str(w / "runs" / "other")], "not a threshnet-search study"),
    ("studies.report", lambda w: [str(w / "half")], "is not a valid trials table"),
    ("studies.remeasure", lambda w: [str(w / "runs" / "other")], "not a threshnet-search study"),
    ("studies.remeasure", lambda w: [str(w / "half")], "is not a valid trials table"),
    (
        "studies.remeasure",
        lambda w: [str(w / "runs" / "existing"), "--threads", "0"],
        "expected a positive integer",
    ),
    ("studies.export", lambda w: [str(w / "empty")], "no manifest.json"),
    (
        "studies.export",
        lambda w: [str(w / "runs" / "existing"), "--trial", "7"],
        "has no trial(s) 7",
    ),
    (
        "threshnet.train",
        lambda w: ["--config", str(w / "huge.json"), "--data-dir", str(w / "data")],
        "depth=1000000000 is out of range",
    ),
    ("threshnet.train", lambda w: ["--config", str(w / "pickle.json")], "cannot read config"),
    (
        "threshnet.train",
        lambda w: [
            "--preset",
            "threshnet28",
            "--data-dir",
            str(w / "data"),
            "--cache-dir",
            str(w / "cache"),
            "--out",
            str(w / "train-out"),
            "--device",
            "cpu",
        ],
        "is not a readable threshnet checkpoint",
    ),
    (
        "threshnet.train",
        lambda w: ["--preset", "threshnet28", "--epochs", "0"],
        "expected a positive integer",
    ),
    (
        "threshnet.profile",
        lambda w: ["--config", str(w / "wrong-type.json")],
        "threshold must be an integer",
    ),
    ("threshnet.profile", lambda w: ["--config", str(w / "huge.json")], "out of range"),
]


@pytest.mark.parametrize(
    ("cli", "make_args", "message"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_bad_input_is_one_line_and_changes_nothing(
    world: Path,
    cli: str,
    make_args: Callable[[Path], list[str]],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(world)  # what a CLI writes to a relative default path lands in world
    before = _snapshot(world)
    try:
        code = run_cli(cli, CLIS[cli], make_args(world))
    except SystemExit as exit_:  # argparse errors exit directly
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"{cli}: error: ")
    assert message in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert _snapshot(world) == before
    assert not (world / "runs" / "other" / ".run.lock").exists()  # no lock in foreign dirs
