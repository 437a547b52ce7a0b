"""One table of AISMM's performance figures, with plain-git baselines from the same run.

``python benchmarks/run.py [--quick]``. Figures are printed, never asserted.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("GIT_CONFIG_GLOBAL", os.devnull)
os.environ.setdefault("GIT_CONFIG_NOSYSTEM", "1")


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return (f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores{mem}; "
            f"Python {platform.python_version()}; {git}; load {os.getloadavg()[0]:.1f}")


def _section(name: str, fn: Callable[[bool], dict[str, Any]], quick: bool) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        figures = fn(quick)
    except Exception as exc:  # noqa: BLE001 - a broken section must not hide the others
        figures = {"error": f"{type(exc).__name__}: {exc}"}
    print(f"  ({name}: {time.perf_counter() - start:.0f}s)", file=sys.stderr)
    return figures


def main() -> None:
    quick = "--quick" in sys.argv
    import bench_flow
    import bench_ledger
    import bench_reputation

    sections: dict[str, dict[str, Any]] = {}
    try:
        import bench_gate

        sections["gate"] = _section("gate", bench_gate.run, quick)
    except ImportError:
        sections["gate"] = {"error": "benchmarks/bench_gate.py missing"}
    sections["flow"] = _section("flow", bench_flow.run, quick)
    sections["ledger"] = _section("ledger", bench_ledger.run, quick)
    sections["reputation"] = _section("reputation", bench_reputation.run, quick)
    import bench_serve

    sections["serve"] = _section("serve", bench_serve.run, quick)
    import bench_workflow

    sections["workflow"] = _section("workflow", bench_workflow.run, quick)

    g, f, l, r = (sections[k] for k in ("gate", "flow", "ledger", "reputation"))

    def v(data: dict[str, Any], key: str, fmt: str = "{:.3f}") -> str:
        value = data.get(key)
        return "n/a" if value is None else fmt.format(value)

    rows = [
        ("gate: git push with hooks / without (median)",
         f"{v(g, 'hook_push_median_s')} s / {v(g, 'plain_push_median_s')} s",
         f"ratio {v(g, 'ratio', '{:.2f}')}"),
        ("gate: push with hooks answered by `aismm serve`", f"{v(g, 'served_push_median_s')} s",
         f"ratio {v(g, 'served_ratio', '{:.2f}')}"),
        ("gate: validator, 10 / 100 / 1,000 files",
         f"{v(g, 'judge_10_files_s', '{:.4f}')} / {v(g, 'judge_100_files_s', '{:.4f}')} / "
         f"{v(g, 'judge_1000_files_s', '{:.4f}')} s", "goal < 0.1 s at 1,000"),
        ("push-to-verdict (DoD + reviewer), median / p95",
         f"{v(f, 'push_to_verdict_p50_s')} / {v(f, 'push_to_verdict_p95_s')} s",
         f"served median {v(f, 'push_to_verdict_served_p50_s')} s"),
        ("end-to-end missions/s (create→deliver→review→accept→settle)",
         f"{v(f, 'e2e_missions_per_s')} /s",
         f"plain git {v(f, 'baseline_missions_per_s')} /s, ratio "
         f"{v(f, 'e2e_vs_baseline', '{:.1f}')}x"),
        ("ledger settlements/s single / batched",
         f"{v(l, 'single_per_s', '{:.0f}')} / {v(l, 'batched_per_s', '{:.0f}')}",
         f"naive {v(l, 'naive_per_s', '{:.0f}')} /s, batched ratio "
         f"{v(l, 'batched_vs_naive', '{:.1f}')}x"),
        ("ledger settlements/s, 32 concurrent callers (FULL durability)",
         f"{v(l, 'concurrent_32_per_s', '{:.0f}')} /s", "goal >= 5k"),
        (f"reputation recompute, {'100k' if quick else '1M'} records",
         f"{v(r, 'compute_s')} s", f"cpu {v(r, 'compute_cpu_s')} s; rank 1,000 agents "
                                   f"{v(r, 'rank_1000_s', '{:.4f}')} s"),
    ]
    sizes = [10, 100] if quick else [10, 100, 1000]
    rows.append(("mission list, hubs of " + " / ".join(map(str, sizes)),
                 " / ".join(v(f, f"list_{n}_s", "{:.3f}") for n in sizes) + " s",
                 "per mission " + " / ".join(
                     "n/a" if f.get(f"list_{n}_s") is None else f"{1000 * f[f'list_{n}_s'] / n:.1f}"
                     for n in sizes) + " ms"))
    rows.append(("agent list, 1,000 listed agents (cold / warm cache)",
                 f"{v(f, 'agent_list_1000_s')} / {v(f, 'agent_list_1000_warm_s', '{:.4f}')} s",
                 "goal < 0.2 s"))
    sv = sections["serve"]
    rows.append(("serve idle CPU (no traffic, 3 s)", f"{v(sv, 'idle_cpu_pct', '{:.1f}')} %",
                 "of one core; goal < 1 %"))
    wf = sections["workflow"]
    rows.append(("three-step workflow end to end / the three missions by hand (CLI)",
                 f"{v(wf, 'workflow_s', '{:.2f}')} s / {v(wf, 'by_hand_s', '{:.2f}')} s",
                 f"ratio {v(wf, 'workflow_vs_hand', '{:.2f}')}; goal <= 1.5"))
    rows.append(("mission status, hubs of " + " / ".join(map(str, sizes)),
                 " / ".join(v(f, f"status_{n}_s", "{:.3f}") for n in sizes) + " s", ""))

    print(f"AISMM benchmarks{' (quick)' if quick else ''} — {machine()}")
    width = max(len(row[0]) for row in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:<28} {note}")
    for name, data in sections.items():
        if "error" in data:
            print(f"  {name}: ERROR {data['error']}")


if __name__ == "__main__":
    main()
