"""One Ray task per item, a bounded number at a time, each result handed over as it ends
(what the fidelity check and the baselines run on their workers)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from threshnet.cli import keep_sigterm_handler

Item = TypeVar("Item")
SIGNAL_POLL_SECONDS = 0.5


def each_as_it_ends(
    function: Callable[[Item, Any], dict[str, Any]],
    items: Sequence[Item],
    context: Any,
    *,
    num_cpus: float,
    num_gpus: float,
    limit: int | None,
    on_result: Callable[[Item, dict[str, Any]], None],
    on_death: Callable[[Item, str], dict[str, Any]],
    on_wait: Callable[[list[Item]], None] | None = None,
) -> None:
    """Run ``function(item, context)`` for each item, at most ``limit`` at once; pass each
    result to ``on_result`` as it ends (``on_death(item, reason)`` makes the result of a
    task whose worker died); ``on_wait`` gets the running items every
    SIGNAL_POLL_SECONDS while none ends. Ctrl-C or SIGTERM cancels the tasks still
    running."""
    import ray

    # max_calls=0: a GPU task's worker is kept for the next item (Ray's default for GPU
    # tasks is a new process each time), so it keeps the study's data (search.worker.warm_data).
    task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0, max_calls=0)(function)
    waiting = list(items)
    running: dict[Any, Item] = {}
    most = limit or len(waiting)
    while waiting or running:
        while waiting and len(running) < most:
            item = waiting.pop(0)
            running[task.remote(item, context)] = item
        try:
            # A bounded wait, again and again: Python runs signal handlers (Ctrl-C, the
            # SIGTERM of search.tasks.cluster.stop_on_sigterm) only between waits, and an
            # unbounded one would hold them off until a task ends (minutes).
            done_now: list[Any] = []
            while not done_now:
                keep_sigterm_handler()  # ours, not Ray's crash handler (threshnet.cli)
                done_now, _ = ray.wait(list(running), num_returns=1, timeout=SIGNAL_POLL_SECONDS)
                if not done_now and on_wait is not None:
                    on_wait(list(running.values()))
            done = done_now[0]
        except KeyboardInterrupt:
            for reference in running:
                ray.cancel(reference, force=True)
            raise
        item = running.pop(done)
        try:
            result = ray.get(done)
        except ray.exceptions.RayError as error:  # the worker died (killed, out of memory)
            result = on_death(item, f"the worker died: {str(error).splitlines()[0][:200]}")
        on_result(item, result)
