"""The case study's full-training stage on a fresh machine: what is committed is kept."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from threshnet.presets import get_preset

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench_module(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:  # case_study imports case_study_full as a sibling
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.long  # the case study's script, not the product: two trainings, 15-30 s
def test_a_committed_training_is_not_redone_where_its_checkpoint_is_gone(
    tiny_folder: Path, tmp_path: Path
) -> None:
    # A session ends and its machine goes with the checkpoints; the next one has only the
    # committed summary.json and metrics.csv, and must train only what has none.
    case_study = _bench_module("case_study")
    full = tmp_path / "out" / "full"
    done = full / "threshnet28"
    done.mkdir(parents=True)
    (done / "summary.json").write_text('{"final_epoch_test_acc": 0.85}\n')
    (done / "metrics.csv").write_text("epoch,test_acc\n15,0.85\n")
    get_preset("threshnet28").save(full / "winner-config.json")
    (full / "winner.json").write_text(json.dumps({"number": 3}) + "\n")

    recipe = ("--epochs", "1", "--batch-size", "12", "--device", "cpu")
    recipe += ("--cache-dir", str(tmp_path / "cache"))
    case_study.stage_full(
        case_study.Scale(study=(), fidelity=(), full=recipe, parallel_full=1, bundled=False),
        tmp_path / "out",
        str(tiny_folder),
    )
    assert (done / "summary.json").read_text() == '{"final_epoch_test_acc": 0.85}\n'
    assert (done / "metrics.csv").read_text() == "epoch,test_acc\n15,0.85\n"
    assert not (tmp_path / "out" / "logs" / "full-threshnet28.log").exists()
    for name in ("threshnet79", "winner"):
        summary = json.loads((full / name / "summary.json").read_text())
        assert summary["epochs"] == 1 and summary["train_images"] == 36
