"""Scale out: a local two-node Ray cluster, a real PostgreSQL Optuna storage (the storage
for several nodes), a driver killed mid-run and resumed, cost caps."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import search_env
from postgres_server import postgres_server, unavailable
from ray.cluster_utils import Cluster

from studies.schema import trial_status

pytestmark = pytest.mark.slow


@pytest.fixture
def postgres_url() -> Iterator[str]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with postgres_server() as url:
        yield url


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# Simulated trials (search.run --simulate: the real driver, Ray Tune, storage and records,
# trials that sleep) in CI; real proxy trainings, with the latency scale both nodes share
# across the kill, with -m long (two minutes on 2 cores). The scale's reuse on resume is
# also tests/test_latency_scale.py's, in CI.
@pytest.mark.parametrize("trainable", ["simulated", pytest.param("real", marks=pytest.mark.long)])
def test_trials_spread_over_two_nodes_into_one_postgres_study_that_survives_kill_9(
    trainable: str, search_data_dir: Path, tmp_path: Path, postgres_url: str
) -> None:
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    database = postgres_url
    study_dir = tmp_path / "runs" / "cluster"
    command = [
        sys.executable,
        "-m",
        "search.run",
        "--trials",
        "5",
        "--name",
        "cluster",
        "--out",
        str(tmp_path / "runs"),
        "--address",
        cluster.address,
        "--cpus-per-trial",
        "1",
        "--storage",
        database,
        "--max-params",
        "15000000",
    ]
    real = trainable == "real"
    if real:  # trials long enough that the second node's worker starts in time
        command += ["--smoke", "--data-dir", str(search_data_dir)]
        command += ["--cache-dir", str(tmp_path / "cache"), "--epochs", "3", "--batch-size", "16"]
        command.append("--no-final-pass")  # the smoke study tests the final pass
    else:
        # two at once from the start (Ray Tune would otherwise ramp one actor at a time
        # and could run every short trial on the first node): one on each node
        command += ["--simulate", "compute", "--simulate-seconds", "3,0.5", "--max-concurrent", "2"]
    try:
        driver = subprocess.Popen(
            command,
            env=search_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            completed = [r for r in _rows(study_dir / "trials.csv") if r["status"] == "ok"]
            if len(completed) >= 2:
                break
            time.sleep(0.5)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver only: the cluster is not its own
        driver.wait(60)
        assert len(completed) >= 2, "two trials did not finish before the kill"
        scale = json.loads((study_dir / "manifest.json").read_text()).get("latency_scale")

        result = subprocess.run(
            command, env=search_env(), capture_output=True, text=True, timeout=900, check=False
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "5 finished trials" in result.stdout, result.stdout[-1500:]
        assert f"Optuna storage: optuna-dashboard {database}" in result.stdout
        # the reference time fixed when the study started is reused, not timed again
        assert ("(fixed before (" in result.stdout) == real
        assert json.loads((study_dir / "manifest.json").read_text()).get("latency_scale") == scale
    finally:
        cluster.shutdown()

    rows = _rows(study_dir / "trials.csv")
    by_number = {row["number"]: row for row in rows}
    for before in completed:  # kept as they were, and not trained again
        assert by_number[before["number"]]["val_acc"] == before["val_acc"]
        same = [r for r in rows if r["config_json"] == before["config_json"]]
        assert len([r for r in same if r["status"] == "ok"]) == 1
    trained = [row for row in rows if row["status"] == "ok"]
    assert len(trained) == 5 and len({row["node"] for row in trained}) == 2  # both nodes
    if real:  # one device kind, one reference time: both nodes and runs on the same scale
        ((kind, reference),) = scale.items()
        for row in trained:
            assert row["latency_kind"] == kind
            assert float(row["latency_scale_ms"]) == pytest.approx(reference["ms"])
            assert float(row["latency_ms"]) == pytest.approx(
                float(row["latency_ratio"]) * reference["ms"]
            )
    else:  # a simulated study's latencies come from its surrogate: no scale
        assert not scale and {row["device"] for row in trained} == {"simulated"}
    (capped,) = [row for row in rows if row["preset"] == "threshnet95"]
    assert capped["status"] == "infeasible"  # told to Optuna as COMPLETE, with constraints
    assert "params 16," in capped["error"] and "> max 15,000,000" in capped["error"]
    assert capped["train_seconds"] == "" and capped["node"] == ""  # never sent to a worker

    study = optuna.load_study(study_name="cluster", storage=database)
    infeasible = [t for t in study.trials if trial_status(t) == "infeasible"]
    assert len([t for t in study.trials if trial_status(t) == "ok"]) == 5  # trained ones count
    best = {trial.number for trial in study.best_trials}
    assert best and not best & {trial.number for trial in infeasible}
    assert not (study_dir / "optuna.journal").exists()
