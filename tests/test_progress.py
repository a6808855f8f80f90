"""A run without a terminal still reports progress: full lines at an interval, not silence."""
from __future__ import annotations

import io
import threading

from connectors.worker_metrics import Progress
from tests.helpers import wait_for


class _Log(io.StringIO):
    """A log file: not a terminal; writes may come from the progress thread."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            return super().write(text)


def test_progress_without_a_terminal_writes_whole_lines_at_an_interval() -> None:
    log = _Log()
    with Progress(log, log_interval_s=0.05):
        wait_for(lambda: log.getvalue().count("\n") >= 2, 10, "two progress lines")
    lines = log.getvalue().splitlines()
    assert len(lines) >= 2 and all(line.startswith("hub run: ") and " events (" in line for line in lines)
    assert "\r" not in log.getvalue()
