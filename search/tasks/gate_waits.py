"""What a run's timings wait for on this node's device gate (search.worker.gate).

A latency is timed with nothing else computing on the device, so a timing of this run
waits while another program trains on the same device (a second study on the machine,
say). That wait is by design, but it must not be silent: a task the driver waits for
(the study's reference time) says, once it has waited a while and then every minute,
which processes it waits for; and the status line says when processes that are not this
run's compute on this node's devices. Only a local Ray's workers run under the driver's
process, so the two are said only for a local Ray (on a cluster the driver cannot tell
its own trials' workers from another program's).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from search.worker.gate import GateUser, gate_users
from threshnet.cli import format_duration

FIRST_NOTE_S = 10.0  # a wait shorter than this is a training step ending: say nothing
NOTE_EVERY_S = 60.0


def others_on_gates(users: Sequence[GateUser], me: int) -> list[GateUser]:
    """The gate's holders that are not this run's (not ``me`` nor under it)."""
    return [user for user in users if not user.waiting and not user.under(me)]


def describe_users(users: Sequence[GateUser], limit: int = 2) -> str:
    """'pid 1 (...) and pid 2 (...)' (and how many more), with what they do."""
    shown = [user.describe() for user in users[:limit]]
    more = f" and {len(users) - limit} more" if len(users) > limit else ""
    timing = all(user.timing for user in users)
    if len(users) == 1:
        doing = "times a latency" if timing else "computes"
    else:
        doing = "time latencies" if timing else "compute"
    keys = sorted({user.key for user in users})
    return f"{', '.join(shown)}{more} {doing} on {'/'.join(keys)}"


def waiting_line(what: str, waited_s: float, users: Sequence[GateUser], me: int) -> str | None:
    """A line saying that ``what``, ``waited_s`` under way (its start on a worker
    included), waits for the gate, and for whom; None
    when none of this run's processes waits for a gate that another program holds."""
    waiting = [user for user in users if user.waiting and user.under(me)]
    others = [
        user
        for user in others_on_gates(users, me)
        if user.key in {waiter.key for waiter in waiting}
    ]
    if not others:
        return None
    return (
        f"{what}: {format_duration(waited_s)} so far, waiting for the device: "
        f"{describe_users(others)}; a latency is timed with nothing else computing on the "
        "device, so it goes on when they pause between steps or end (a stopped or "
        "suspended program holds the device until it goes on)"
    )


def sharing_note(users: Sequence[GateUser], me: int) -> str:
    """The status line's ' | device shared: ...' while other programs compute on this
    node's devices; '' when none does."""
    others = others_on_gates(users, me)
    if not others:
        return ""
    return f" | device shared: {describe_users(others, limit=1)} (timings wait for it)"


def get_saying_gate_waits(ref: Any, *, what: str, say: Callable[[str], None], local: bool) -> Any:
    """``ray.get(ref)``; meanwhile, on a local Ray, say when and for whom its timing waits
    on the device gate (after FIRST_NOTE_S, then every NOTE_EVERY_S while it still does)."""
    import ray

    if not local:
        return ray.get(ref)
    started = time.monotonic()
    next_note = FIRST_NOTE_S
    while True:
        ready, _ = ray.wait([ref], timeout=2.0)
        if ready:
            return ray.get(ref)
        waited = time.monotonic() - started
        if waited >= next_note:
            line = waiting_line(what, waited, gate_users(), os.getpid())
            if line is not None:
                say(line)
                next_note = waited + NOTE_EVERY_S
