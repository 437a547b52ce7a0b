"""`aismm serve` at rest: the CPU an idle resident process uses (goal: about none).

Printed by ``benchmarks/run.py``; never asserted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_flow import _hub

IDLE = 3.0


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aismm-bench-serve-") as tmp:
        hub, _key = _hub(Path(tmp))
        log = Path(tmp) / "serve.log"
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "aismm", "--hub", str(hub.root),
                                     "serve", "--interval", "30"], stdout=out, stderr=out)
        try:
            for _ in range(400):
                if "serving" in log.read_text():
                    break
                time.sleep(0.05)
            time.sleep(1.0)  # past the first full pass
            before = _cpu(proc.pid)
            time.sleep(IDLE)
            used = _cpu(proc.pid) - before
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    return {"idle_cpu_pct": 100 * used / IDLE, "idle_seconds": IDLE}
