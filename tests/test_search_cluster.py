"""Scale out: a local two-node Ray cluster, a SQLite Optuna storage, cost caps."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import search_env
from ray.cluster_utils import Cluster

from studies.schema import trial_status

pytestmark = pytest.mark.slow


def test_trials_spread_over_two_nodes_into_one_study(search_data_dir: Path, tmp_path: Path) -> None:
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    database = f"sqlite:///{tmp_path / 'optuna.db'}"
    command = [
        sys.executable,
        "-m",
        "search.run",
        "--smoke",
        "--trials",
        "5",
        "--name",
        "cluster",
        "--data-dir",
        str(search_data_dir),
        "--out",
        str(tmp_path / "runs"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--address",
        cluster.address,
        "--cpus-per-trial",
        "1",
        "--storage",
        database,
        "--max-params",
        "15000000",
        # trials long enough that the second node's worker starts in time
        *("--epochs", "3", "--batch-size", "16"),
    ]
    try:
        result = subprocess.run(
            command, env=search_env(), capture_output=True, text=True, timeout=900, check=False
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "5 finished trials" in result.stdout, result.stdout[-1500:]
        assert f"Optuna storage: optuna-dashboard {database}" in result.stdout
        again = subprocess.run(
            command, env=search_env(), capture_output=True, text=True, timeout=600, check=False
        )
        assert again.returncode == 0 and "0 run now" in again.stdout, again.stderr[-3000:]
    finally:
        cluster.shutdown()

    study_dir = tmp_path / "runs" / "cluster"
    with open(study_dir / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    trained = [row for row in rows if row["status"] == "ok"]
    assert len(trained) == 5 and len({row["node"] for row in trained}) == 2  # both nodes
    (capped,) = [row for row in rows if row["preset"] == "threshnet95"]
    assert capped["status"] == "infeasible"  # told to Optuna as COMPLETE, with constraints
    assert "params 16," in capped["error"] and "> max 15,000,000" in capped["error"]
    assert capped["train_seconds"] == "" and capped["node"] == ""  # never sent to a worker

    study = optuna.load_study(study_name="cluster", storage=database)
    infeasible = [t for t in study.trials if trial_status(t) == "infeasible"]
    assert len(study.trials) == 5 + len(infeasible)  # --trials counts trained trials
    best = {trial.number for trial in study.best_trials}
    assert best and not best & {trial.number for trial in infeasible}
    assert not (study_dir / "optuna.journal").exists()
