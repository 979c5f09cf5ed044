"""``threshnet-search <command> [flags]``: every command of the toolkit under one name.

Each command is a thin alias of its ``python -m`` module, which stays: the same flags, the
same output, the same exit status.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from threshnet.cli import EXIT_USAGE, run_cli

PROG = "threshnet-search"
COMMANDS = {  # command -> (module, what it does)
    "run": ("search.run", "search the ThreshNet family for accuracy/latency trade-offs"),
    "report": ("studies.report", "write a study's HTML report and pareto.json"),
    "export": ("studies.export", "write the chosen trials' configs as JSON"),
    "remeasure": ("studies.remeasure", "re-time a study's front candidates and presets"),
    "fidelity": (
        "search.fidelity",
        "retrain chosen configs at a ladder of budgets: does the proxy rank right?",
    ),
    "table": ("studies.table", "the paper's results table for a study's presets and winners"),
    "train": ("threshnet.train", "full training of a config"),
    "profile": ("threshnet.profile", "parameters, FLOPs, memory and latency of a config"),
}


def usage() -> str:
    """The command list."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} <command> [flags]   ({PROG} <command> --help for its flags)", ""]
    lines += [
        f"  {name:<{width}}  {about} (python -m {module})"
        for name, (module, about) in COMMANDS.items()
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else EXIT_USAGE
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(
            f"{PROG}: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    module = importlib.import_module(COMMANDS[command][0])
    return run_cli(module.PROG, module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
