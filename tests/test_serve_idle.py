"""An idle `aismm serve` sleeps: it wakes on real ref moves only, not on its own reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_serve import _hub

IDLE_SECONDS = 2.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_an_idle_server_uses_almost_no_cpu(tmp_path: Path) -> None:
    hub, _created = _hub(tmp_path, missions=3)
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "aismm", "--hub", str(hub.root), "serve",
                             "--interval", "30"], stdout=log, stderr=log)
    try:
        for _ in range(300):  # up and through its first pass (the socket comes first)
            if "serving" in (tmp_path / "serve.log").read_text():
                break
            time.sleep(0.05)
        time.sleep(0.5)  # let the first full pass finish
        before = _cpu_seconds(proc.pid)
        time.sleep(IDLE_SECONDS)  # the measurement window itself, not a timeout
        used = _cpu_seconds(proc.pid) - before
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        log.close()
    assert used / IDLE_SECONDS < 0.05, f"{used:.2f} s of CPU in {IDLE_SECONDS} s idle"
