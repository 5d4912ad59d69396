"""Last of the end-to-end tests: SIGTERM to `bertplat serve` stops the worker and the server, leaving no process."""

from __future__ import annotations

import os
import signal

import pytest

from tests.e2e.conftest import descendants, group_alive

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_serve_stops_everything_on_sigterm(served):
    served.seen_pids |= descendants(served.proc.pid)
    assert len(served.seen_pids) >= 2, served.seen_pids
    served.proc.send_signal(signal.SIGTERM)
    served.proc.wait(timeout=90)
    assert "none left" in served.log.read_text(), served.tail()
    assert not group_alive(served.proc.pid)
    alive = [p for p in served.seen_pids if os.path.exists(f"/proc/{p}")
             and "zombie" not in open(f"/proc/{p}/status").read().lower()]
    assert not alive, f"left behind: {alive}"
