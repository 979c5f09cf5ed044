"""Where Ray's, Optuna's and Python's warnings go during a run: a log file in the study.

``-q`` promises only the product's errors and summary, and the default only the
product's lines; Ray Tune's "Define-by-run function ... took 5.7 seconds" warning,
Optuna's "'greenlet' package is unavailable" and the tracebacks Ray's controller logs
for a failed trial are not the product's. Below ``--verbose`` they are written to
``<study>/library.log`` instead of the terminal (``-v`` shows them as they come).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna

LIBRARY_LOG = "library.log"
# Loggers whose records are the libraries' own, not the product's.
LIBRARY_LOGGERS = ("py.warnings", "ray", "optuna")


@contextlib.contextmanager
def library_output_to(path: Path) -> Iterator[None]:
    """Send warnings and the libraries' log records to ``path`` (appended) while inside;
    the terminal keeps only the product's own lines."""
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    saved: list[tuple[logging.Logger, list[logging.Handler], bool]] = []
    optuna.logging.disable_default_handler()
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each warning once per place, as usual
            for name in LIBRARY_LOGGERS:
                logger = logging.getLogger(name)
                saved.append((logger, list(logger.handlers), logger.propagate))
                for existing in list(logger.handlers):
                    logger.removeHandler(existing)
                logger.addHandler(handler)
                logger.propagate = False
            yield
    finally:
        for logger, handlers, propagate in saved:
            logger.removeHandler(handler)
            for existing in handlers:
                logger.addHandler(existing)
            logger.propagate = propagate
        logging.captureWarnings(False)
        optuna.logging.enable_default_handler()
        handler.close()
