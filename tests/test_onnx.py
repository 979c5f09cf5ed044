"""ONNX export and the ONNX Runtime latency backend, with the real onnx and onnxruntime."""

from __future__ import annotations

import csv
import dataclasses
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import cli_error

from search.run import PROG as SEARCH
from search.run import _differences, _parser, build_settings
from search.run import main as search_main
from search.setup.settings import DEFAULT_SETTINGS, LatencyProtocol, StudySettings
from search.setup.study import StudyDirectory
from studies import schema
from studies.export import PROG as EXPORT
from studies.export import main as export_main
from threshnet.cli import run_cli
from threshnet.config import StageConfig, ThreshNetConfig
from threshnet.latency import LatencySettings
from threshnet.model import build_model
from threshnet.onnx_export import OnnxExportError, check_outputs, export_onnx
from threshnet.onnx_runtime import inference_session
from threshnet.presets import get_preset
from threshnet.steady_latency import measure_steady_latency, reference_config, timed_network
from threshnet.train import PROG as TRAIN
from threshnet.train import main as train_main

TINY = ThreshNetConfig(
    stages=(StageConfig(2, 8, 16, True), StageConfig(2, 8, 32, False)), threshold=1, stem=(8, 16)
)
SETTINGS = LatencySettings(warmup=1, repeats=3, threads=1)


def _run(session: ort.InferenceSession, image: torch.Tensor) -> np.ndarray:
    return session.run(None, {"image": image.numpy()})[0]


@pytest.fixture(scope="module")
def tiny_onnx() -> tuple[torch.nn.Module, bytes]:
    """TINY with seeded weights, and its checked export at 16x16 (one export for the module)."""
    torch.manual_seed(1)
    model = build_model(TINY)
    return model, export_onnx(model, input_size=16)


def test_an_export_runs_in_onnx_runtime_as_in_pytorch(
    tiny_onnx: tuple[torch.nn.Module, bytes],
) -> None:
    model, onnx_model = tiny_onnx
    session = inference_session(onnx_model, device="cpu", threads=1)
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert session.get_inputs()[0].shape == [1, 3, 16, 16]
    assert session.get_session_options().intra_op_num_threads == 1
    image = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        expected = model.eval()(image).numpy()
    assert _run(session, image) == pytest.approx(expected, abs=1e-5)
    assert check_outputs(model, onnx_model, image) < 1e-5


def test_a_graph_that_computes_something_else_fails_the_check(
    tiny_onnx: tuple[torch.nn.Module, bytes],
) -> None:
    torch.manual_seed(2)
    other = build_model(TINY)  # other weights: the graph no longer computes this model
    with pytest.raises(OnnxExportError, match="differs from PyTorch's by up to"):
        check_outputs(other, tiny_onnx[1], torch.randn(1, 3, 16, 16))


def test_onnx_runtime_is_timed_by_the_steady_protocol(
    tiny_onnx: tuple[torch.nn.Module, bytes],
) -> None:
    model, onnx_model = tiny_onnx
    candidate, reference = (inference_session(onnx_model, device="cpu", threads=1) for _ in "ab")
    result = measure_steady_latency(
        candidate, reference, input_size=16, settings=SETTINGS, rounds=3
    )
    assert 0.5 < result.ratio < 2.0  # the same graph: about 1 (the machine is shared)
    assert result.latency_ms > 0 and result.reference_ms > 0
    assert result.rounds == 3 + result.added_rounds  # rounds added while the error is high
    assert result.candidate.repeats == 3 * result.rounds
    assert result.candidate.threads == 1  # the sessions' own intra-op threads
    with pytest.raises(TypeError, match="same backend"):
        measure_steady_latency(model, reference, input_size=16, settings=SETTINGS)
    with pytest.raises(ValueError, match="batch 1, float32"):
        measure_steady_latency(
            candidate,
            reference,
            input_size=16,
            settings=dataclasses.replace(SETTINGS, batch_size=2),
        )


def test_the_backend_is_a_setting_an_old_manifest_reads_as_eager(
    directory: StudyDirectory,
) -> None:
    onnx = dataclasses.replace(DEFAULT_SETTINGS, latency=LatencyProtocol(backend="onnxruntime"))
    assert StudySettings.from_dict(onnx.to_dict()) == onnx
    args = _parser().parse_args(["--latency-backend", "onnxruntime"])
    assert build_settings(args, DEFAULT_SETTINGS) == onnx
    # resuming an eager study with the other backend is refused, the difference named
    assert _differences(DEFAULT_SETTINGS.to_dict(), onnx.to_dict()) == [
        "latency.backend: 'eager' -> 'onnxruntime'"
    ]
    old = DEFAULT_SETTINGS.to_dict()
    del old["latency"]["backend"]  # written before there was a choice
    directory.write_manifest({"name": "s", "study_name": "s", "settings": old})
    manifest = directory.read_manifest()
    assert manifest is not None
    assert StudySettings.from_dict(manifest["settings"]).latency.backend == "eager"


def test_without_onnxruntime_the_commands_say_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    argv = ["--smoke", "--latency-backend", "onnxruntime", "--out", str(tmp_path), "--name", "s"]
    error = cli_error(SEARCH, search_main, argv, capsys)
    assert error == (
        "search.run: error: --latency-backend onnxruntime needs onnxruntime: "
        "pip install -e '.[onnx]'"
    )
    assert not (tmp_path / "s").exists()  # nothing left behind
    error = cli_error(EXPORT, export_main, [str(tmp_path), "--onnx"], capsys)
    assert error.endswith("--onnx needs onnxruntime: pip install -e '.[onnx]'")
    error = cli_error(EXPORT, export_main, ["--checkpoint", str(tmp_path / "c.pt")], capsys)
    assert error.endswith("--checkpoint needs onnxruntime: pip install -e '.[onnx]'")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give a study directory, or --checkpoint FILE"),
        (["{tmp}", "--checkpoint", "{tmp}/c.pt"], "give no study or trials"),
        (["--checkpoint", "{tmp}/missing.pt"], "missing.pt is not a file"),
        (["--checkpoint", "{tmp}/junk.pt"], "junk.pt is not a readable threshnet checkpoint"),
    ],
)
def test_bad_checkpoint_exports_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04not a checkpoint")
    filled = [arg.format(tmp=tmp_path) for arg in argv]
    error = cli_error(EXPORT, export_main, filled, capsys)
    assert message in error and "weights_only" not in error
    assert not list(tmp_path.glob("*.onnx"))


# ThreshNet28 in CI; ThreshNet79, twice its export time, with the long tests.
@pytest.mark.slow
@pytest.mark.parametrize(
    "preset", ["threshnet28", pytest.param("threshnet79", marks=pytest.mark.long)]
)
def test_a_preset_exports_and_matches_pytorch(preset: str) -> None:
    model = build_model(get_preset(preset))
    session = inference_session(export_onnx(model, input_size=32), device="cpu", threads=1)
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(image).numpy()
    assert _run(session, image) == pytest.approx(expected, abs=1e-4)


@pytest.mark.slow
def test_the_reference_against_itself_in_onnx_runtime_is_about_one() -> None:
    candidate, reference = (
        timed_network(build_model(reference_config()), "onnxruntime", input_size=32, threads=1)
        for _ in "ab"
    )
    result = measure_steady_latency(
        candidate, reference, input_size=32, settings=SETTINGS, rounds=5
    )
    assert 0.7 < result.ratio < 1.4


def _tiny_study(root: Path) -> Path:
    """A finished study of two trials (TINY and a wider variant), written as search.run
    writes one."""
    root.mkdir()
    settings = DEFAULT_SETTINGS.to_dict()
    schema.write_manifest(root, {"name": "s", "study_name": "s", "settings": settings})
    wide = dataclasses.replace(TINY, stem=(8, 24))
    header = ["number", "state", "status", "preset", "val_acc", "latency_ms", "params"]
    header += ["macs", "epochs", "config_json"]
    with open(root / "trials.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for number, (config, acc, ms) in enumerate([(TINY, 0.3, 1.0), (wide, 0.4, 2.0)]):
            line = config.to_json().replace("\n", "")
            epochs = DEFAULT_SETTINGS.train.epochs  # the full budget: a finished trial
            writer.writerow([number, "COMPLETE", "ok", "", acc, ms, 1, 1, epochs, line])
    return root


@pytest.mark.slow
def test_studies_export_onnx_writes_a_checked_graph_beside_each_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _tiny_study(tmp_path / "study")
    assert run_cli(EXPORT, export_main, [str(root), "--onnx"]) == 0
    assert "and their ONNX graphs" in capsys.readouterr().out
    configs = sorted((root / "configs").glob("*.json"))
    graphs = sorted((root / "configs").glob("*.onnx"))
    assert [p.stem for p in graphs] == [p.stem for p in configs] == ["trial-0000", "trial-0001"]
    for config, graph in zip(configs, graphs, strict=True):
        session = inference_session(graph.read_bytes(), device="cpu", threads=1)
        assert session.get_inputs()[0].shape == [1, 3, 32, 32]
        classes = ThreshNetConfig.load(config).num_classes
        assert _run(session, torch.randn(1, 3, 32, 32)).shape == (1, classes)


@pytest.mark.slow
def test_a_trained_checkpoint_exports_with_its_trained_weights(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    TINY.save(tmp_path / "tiny.json")
    run = tmp_path / "run"
    argv = ["--config", str(tmp_path / "tiny.json"), "--data-dir", str(tiny_folder)]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--out", str(run), "--epochs", "1"]
    argv += ["--device", "cpu", "--batch-size", "16"]
    assert run_cli(TRAIN, train_main, argv) == 0
    out = tmp_path / "deploy" / "tiny.onnx"
    assert (
        run_cli(
            EXPORT, export_main, ["--checkpoint", str(run / "checkpoint.pt"), "--out", str(out)]
        )
        == 0
    )
    assert f"to {out}" in capsys.readouterr().out
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    trained = build_model(ThreshNetConfig.from_dict(checkpoint["identity"]["config"]))
    trained.load_state_dict(checkpoint["model"])
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = trained.eval()(image).numpy()
    session = inference_session(out.read_bytes(), device="cpu", threads=1)
    assert _run(session, image) == pytest.approx(expected, abs=1e-4)
    assert run_cli(EXPORT, export_main, ["--checkpoint", str(run / "checkpoint.pt")]) == 0
    assert (run / "model.onnx").is_file()  # the default: beside the checkpoint
