"""Shared command-line plumbing: one clear error line and a non-zero exit for user errors."""

from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import torch

from threshnet.config import ThreshNetConfig
from threshnet.presets import get_preset

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM: what a shell reports for a process SIGTERM ended
EXIT_DISK_FULL = 3


class UserError(Exception):
    """A problem the user can fix (bad flag, missing file, invalid config)."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's help ends with its default, unless it has none or already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        empty = isinstance(default, list | tuple | dict | set) and not default
        unset = default is None or default is False or default == argparse.SUPPRESS or empty
        if unset or action.option_strings == []:
            return text
        if "%(default)" in text or "default" in text or f"({default}" in text:
            return text
        return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr, without the usage block; help shows
    defaults, and the description is plain text (no reStructuredText markup)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        if kwargs.get("description"):
            kwargs["description"] = kwargs["description"].replace("``", "")
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _disk_full(error: BaseException | None) -> OSError | None:
    """The out-of-space OSError behind ``error`` (libraries may wrap it), if there is one."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return error
        error = error.__cause__ or error.__context__
    return None


_sigterm = threading.Event()
_sigterm_watch: list[Callable[[], None]] = []  # what the watch thread runs at the first SIGTERM
_sigterm_handler: list[Callable[[int, Any], None]] = []  # the one stop_on_sigterm installed
_wakeup: list[int] = []  # the write end of the signal wake-up pipe


def _watch_for_sigterm(reader: int) -> None:
    """In a thread: Python writes each signal's number to the wake-up pipe the moment it
    arrives, even while the main thread is stuck in C code (where its handlers cannot run)."""
    while data := os.read(reader, 64):
        if signal.SIGTERM in data:
            _sigterm.set()
            for action in _sigterm_watch:
                action()
            return  # the first SIGTERM only


def stop_on_sigterm(on_signal: Callable[[], None] | None = None) -> None:
    """Make SIGTERM (what ``kill``, ``timeout``, Kubernetes, SLURM and systemd send) stop the
    command the way Ctrl-C does (SIGINT: Ray Tune ends its trials; elsewhere a
    KeyboardInterrupt), and remember it, so that the command exits with status 143.

    ``on_signal`` runs in a daemon thread at the first SIGTERM, at once, even while the
    main thread waits in a library's C code: a watch on a stop that could hang. Call it
    again after a library replaced the handler; call it from the main thread.
    """
    if not _wakeup:
        reader, writer = os.pipe()
        os.set_blocking(writer, False)
        _wakeup.append(writer)
        watch = threading.Thread(
            target=_watch_for_sigterm, args=(reader,), daemon=True, name="sigterm-watch"
        )
        watch.start()
    signal.set_wakeup_fd(_wakeup[0], warn_on_full_buffer=False)
    _sigterm_watch[:] = [on_signal] if on_signal is not None else []

    def on_sigterm(signum: int, frame: Any) -> None:
        _sigterm.set()
        if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
            # SIGINT ignored, as `nohup CMD &` starts a command: Ctrl-C's signal would do
            # nothing (or kill at once), so stop the way Python's Ctrl-C does
            raise KeyboardInterrupt
        signal.raise_signal(signal.SIGINT)  # Ctrl-C's handler: Python's, or Ray Tune's

    signal.signal(signal.SIGTERM, on_sigterm)
    _sigterm_handler[:] = [on_sigterm]


def keep_sigterm_handler() -> None:
    """Install ``stop_on_sigterm``'s handler again (main thread only). A library's C code
    can replace it below Python, where ``signal.getsignal`` does not see it: Ray's core
    worker installs a crash handler for SIGTERM that aborts the process (exit -6), at
    times after ``ray.init`` has returned."""
    if _sigterm_handler and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_handler[0])


def sigterm_received() -> bool:
    """True once a SIGTERM has reached this process (see ``stop_on_sigterm``)."""
    return _sigterm.is_set()


def run_cli(
    prog: str, main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None
) -> int:
    """Run ``main``; a UserError becomes one line on stderr and exit status 2, Ctrl-C exit
    status 130 (SIGTERM 143), a full disk one line and exit status 3."""
    try:
        return main(argv)
    except UserError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if sigterm_received():
            print(f"{prog}: stopped by SIGTERM (finished work is kept)", file=sys.stderr)
            return EXIT_TERMINATED
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if sigterm_received():  # the stop's own fallout: workers the same signal ended
            print(f"{prog}: stopped by SIGTERM (finished work is kept)", file=sys.stderr)
            return EXIT_TERMINATED
        full = _disk_full(error)
        if full is None:
            raise
        where = f" writing {full.filename}" if full.filename else ""
        print(
            f"{prog}: error: no space left on the device{where}: free some space, then rerun "
            "the same command to resume (finished work is kept)",
            file=sys.stderr,
        )
        return EXIT_DISK_FULL


def format_duration(seconds: float) -> str:
    """A duration for people: '42 s', '3 min 05 s', '2 h 07 min'."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, whole = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {whole:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def number_type(
    cast: Callable[[str], float], description: str, accept: Callable[[float], bool]
) -> Callable[[str], float]:
    """An argparse type: ``cast(text)`` that ``accept`` allows, else a one-line error."""

    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {description}, got {text}")
        return value

    return parse


positive_int = number_type(int, "a positive integer", lambda value: value >= 1)
non_negative_int = number_type(int, "an integer >= 0", lambda value: value >= 0)
positive_float = number_type(float, "a finite positive number", lambda value: 0 < value < math.inf)
non_negative_float = number_type(float, "a finite number >= 0", lambda value: 0 <= value < math.inf)
finite_float = number_type(float, "a finite number", math.isfinite)
unit_fraction = number_type(float, "a number in (0, 1]", lambda value: 0 < value <= 1)


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N', checked against what this machine has."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {name!r}; use cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"device {name!r} was requested but this machine has no usable CUDA GPU"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise UserError(f"device {name!r} does not exist; this machine has {count} GPU(s)")
    return device


def load_config_or_preset(
    *, preset: str | None, config_path: str | None
) -> tuple[str, ThreshNetConfig]:
    """(name, config) from ``--preset NAME`` or ``--config FILE``; a bad file is a UserError.

    The name is the preset's name or the config path as given.
    """
    if preset:
        return preset, get_preset(preset)
    try:
        return str(config_path), ThreshNetConfig.load(str(config_path))
    except ValueError as error:
        raise UserError(str(error)) from None
