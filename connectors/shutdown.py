"""Graceful stop on Ctrl-C / SIGTERM: sources end their input, the flow drains and flushes.

Without this, the first signal surfaces inside a source as a Bytewax runtime error and buffered
rows are lost. A second signal falls back to the default (immediate) behaviour.
"""
from __future__ import annotations

import signal
import threading

requested = threading.Event()


def install() -> None:
    def handler(signum: int, frame: object) -> None:
        requested.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    requested.clear()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
