"""Ray's, Optuna's and Python's warnings go to the study's library.log below --verbose."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import optuna
import pytest
from conftest import SmokeStudy

from search.setup.library_log import LIBRARY_LOG, library_output_to


def test_library_output_goes_to_the_file_and_the_terminal_keeps_the_products(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / LIBRARY_LOG
    with library_output_to(log):
        warnings.warn("Define-by-run function took 5.7 seconds", UserWarning, stacklevel=1)
        logging.getLogger("ray.tune.tune").error("Trial task failed: Traceback ...")
        optuna.logging.get_logger("optuna.samplers").warning("'greenlet' is unavailable")
        print("the product's own line", file=sys.stderr)
    out, err = capfd.readouterr()
    text = log.read_text()
    for library_line in ("Define-by-run", "Trial task failed", "greenlet"):
        assert library_line in text and library_line not in out + err
    assert "the product's own line" in err and "the product's own line" not in text
    # afterwards, everything is as it was
    with pytest.warns(UserWarning, match="after"):
        warnings.warn("after", UserWarning, stacklevel=1)


def test_a_smoke_run_prints_no_library_warnings(smoke_study: SmokeStudy) -> None:
    stderr = smoke_study.result.stderr
    assert "Warning" not in stderr and "Traceback" not in stderr, stderr[-2000:]
    log = smoke_study.root / LIBRARY_LOG
    assert log.exists()  # the injected trial faults: Ray's controller logged them here
    assert "Trial task failed" in log.read_text() or "Traceback" in log.read_text()
