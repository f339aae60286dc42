"""A server process's start without the cyclic garbage collector.

Starting `serve` imports the MCP SDK, SQLAlchemy and pydantic and builds several hundred pydantic models and the
tools' schemas: about 200,000 objects that live as long as the process, and very little garbage (about 3% of the
allocated blocks, mostly short-lived schema-building dicts). With the collector on, each 700 allocations start a
young collection and every tenth an older one, so the collector walks that growing heap again and again: about a
quarter of a start's CPU (0.5-0.7 s of 2.4-2.8 s on the test machine). Paused while starting, then frozen (the
start's objects go to the permanent generation, which later collections do not walk), the start costs only its
own work, and the running server collects its own garbage as before."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused(*, freeze: bool = True) -> Iterator[None]:
    """No cyclic collection inside; after it, what was built is frozen (`freeze`) and the collector is on again if
    it was on before (a caller in a process that switched it off keeps it off). `freeze=False` for a short command
    run inside a longer process, whose objects should stay collectable."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if collecting:
            gc.enable()
