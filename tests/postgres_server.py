"""A throw-away PostgreSQL server for the storage tests: Debian's ``postgresql`` binaries,
``initdb`` in a temporary directory, ``pg_ctl start`` on a free loopback port.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user
the Debian package creates. ``unavailable()`` says why a test must skip, if it must.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _pg_ctl() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))  # Debian's layout
    if found:
        return found[-1]
    on_path = shutil.which("pg_ctl")
    return Path(on_path) if on_path else None


def unavailable() -> str | None:
    """Why no server can be started here (None: one can)."""
    if _pg_ctl() is None:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    if importlib.util.find_spec("psycopg") is None:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as another user"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield its SQLAlchemy URL (psycopg 3); stop and remove it after."""
    pg_ctl = _pg_ctl()
    assert pg_ctl is not None, unavailable()
    as_server_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="threshnet-pg-"))
    if as_server_user:
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()

    def run(*args: str | Path) -> None:
        subprocess.run([*as_server_user, *map(str, args)], check=True, capture_output=True)

    try:
        run(pg_ctl.parent / "initdb", "-D", data, "-A", "trust", "-U", "threshnet", "--no-sync")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(pg_ctl, "-D", data, "-l", root / "server.log", "-o", options, "-w", "start")
        try:
            yield f"postgresql+psycopg://threshnet@127.0.0.1:{port}/postgres"
        finally:
            run(pg_ctl, "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
