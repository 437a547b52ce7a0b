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
    import bench_listing

    sections["listing"] = _section("listing", bench_listing.run, quick)
    import bench_serve

    sections["serve"] = _section("serve", bench_serve.run, quick)
    import bench_ownership

    sections["ownership"] = _section("ownership", bench_ownership.run, quick)

    import bench_http

    sections["http"] = _section("http", bench_http.run, quick)

    import bench_workflow

    sections["workflow"] = _section("workflow", bench_workflow.run, quick)
    import bench_startup

    sections["startup"] = _section("startup", bench_startup.run, quick)

    g, f, l, r = (sections[k] for k in ("gate", "flow", "ledger", "reputation"))

    def v(data: dict[str, Any], key: str, fmt: str = "{:.3f}") -> str:
        value = data.get(key)
        return "n/a" if value is None else fmt.format(value)

    rows = [
        ("gate: git push with hooks / without (median)",
         f"{v(g, 'hook_push_median_s')} s / {v(g, 'plain_push_median_s')} s",
         f"ratio {v(g, 'ratio', '{:.2f}')} (full gate, AISMM_LEAN_HOOK=0: "
         f"{v(g, 'ratio_full_gate', '{:.2f}')}); CPU ratio {v(g, 'cpu_ratio', '{:.2f}')} "
         f"(full gate {v(g, 'cpu_ratio_full_gate', '{:.2f}')}); goal <= 8 without serve"),
        ("gate: push with hooks answered by `aismm serve`", f"{v(g, 'served_push_median_s')} s",
         f"ratio {v(g, 'served_ratio', '{:.2f}')}"),
        ("gate: validator, 10 / 100 / 1,000 files",
         f"{v(g, 'judge_10_files_s', '{:.4f}')} / {v(g, 'judge_100_files_s', '{:.4f}')} / "
         f"{v(g, 'judge_1000_files_s', '{:.4f}')} s", "goal < 0.1 s at 1,000"),
        ("push-to-verdict (DoD + reviewer), median / p95",
         f"{v(f, 'push_to_verdict_p50_s')} / {v(f, 'push_to_verdict_p95_s')} s",
         f"served median {v(f, 'push_to_verdict_served_p50_s')} s"),
        ("served push-to-verdict, warm workers / one-shot sandbox (median)",
         f"{v(f, 'push_to_verdict_served_p50_s')} / "
         f"{v(f, 'push_to_verdict_served_oneshot_p50_s')} s", "goal <= 0.150 s warm"),
        ("end-to-end missions/s (create→deliver→review→accept→settle), no serve",
         f"{v(f, 'e2e_missions_per_s')} /s",
         f"plain git {v(f, 'baseline_missions_per_s')} /s, ratio "
         f"{v(f, 'e2e_vs_baseline', '{:.1f}')}x"),
        ("end-to-end missions/s through `aismm serve`, warm workers",
         f"{v(f, 'e2e_served_missions_per_s')} /s",
         f"plain git {v(f, 'e2e_served_baseline_missions_per_s')} /s (paired), ratio "
         f"{v(f, 'e2e_served_vs_baseline', '{:.2f}')}x (median of the pairs "
         f"{v(f, 'e2e_served_pair_ratio_p50', '{:.2f}')}x); goal <= 2.5x"),
        ("  its CPU per mission (all processes, serve's included) / plain git's",
         f"{v(f, 'e2e_served_cpu_per_mission_s')} / "
         f"{v(f, 'e2e_served_baseline_cpu_per_mission_s')} s",
         f"ratio {v(f, 'e2e_served_cpu_vs_baseline', '{:.2f}')}x (one-shot "
         f"{v(f, 'e2e_served_oneshot_cpu_vs_baseline', '{:.2f}')}x, daemon "
         f"{v(f, 'e2e_served_daemon_cpu_vs_baseline', '{:.2f}')}x)"),
        ("  the same, one-shot sandbox / `processing: daemon`",
         f"{v(f, 'e2e_served_oneshot_vs_baseline', '{:.2f}')}x / "
         f"{v(f, 'e2e_served_daemon_vs_baseline', '{:.2f}')}x",
         f"daemon push-to-verdict median {v(f, 'push_to_verdict_served_daemon_p50_s')} s"),
        ("ledger settlements/s single / batched",
         f"{v(l, 'single_per_s', '{:.0f}')} / {v(l, 'batched_per_s', '{:.0f}')}",
         f"naive {v(l, 'naive_per_s', '{:.0f}')} /s, batched ratio "
         f"{v(l, 'batched_vs_naive', '{:.1f}')}x"),
        ("ledger settlements/s, 32 concurrent callers (FULL durability)",
         f"{v(l, 'group_32_per_s', '{:.0f}')} /s group commit",
         f"own connections {v(l, 'concurrent_32_per_s', '{:.0f}')} /s, ratio "
         f"{v(l, 'group_vs_concurrent', '{:.1f}')}x; untuned group "
         f"{v(l, 'group_32_untuned_per_s', '{:.0f}')} /s, tuned ratio "
         f"{v(l, 'group_vs_untuned', '{:.2f}')}x; goal >= 5k"),
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
    ls = sections["listing"]
    for n in ls.get("agents", [1000]):
        rows.append((f"agent list, {n:,} agents: new process (disk cache) / uncached",
                     f"{v(ls, f'agents_{n}_cold_s')} / {v(ls, f'agents_{n}_uncached_s')} s",
                     f"ratio {v(ls, f'agents_{n}_ratio', '{:.0f}')}x; cpu "
                     f"{v(ls, f'agents_{n}_cold_cpu_s')} s; warm "
                     f"{v(ls, f'agents_{n}_warm_s', '{:.4f}')} s; goal < "
                     f"{'50 ms' if n == 1000 else '300 ms'}"))
        rows.append((f"  `aismm agent list --json`, {n:,} agents (whole process)",
                     f"{v(ls, f'agents_{n}_cli_s')} s",
                     f"`aismm --help` {v(ls, 'cli_start_s')} s"))
    m = ls.get("missions", 10000)
    rows.append((f"mission list, {m:,} missions: cached / derived afresh",
                 f"{v(ls, f'missions_{m}_cached_s')} / {v(ls, f'missions_{m}_uncached_s')} s",
                 f"ratio {v(ls, f'missions_{m}_ratio', '{:.0f}')}x; cpu "
                 f"{v(ls, f'missions_{m}_cached_cpu_s')} s (every stamp lost: "
                 f"{v(ls, f'missions_{m}_restamp_s')} s, cpu "
                 f"{v(ls, f'missions_{m}_restamp_cpu_s')} s); goal < 0.5 s"))
    rows.append((f"  `aismm mission list --json`, {m:,} missions (whole process)",
                 f"{v(ls, f'missions_{m}_cli_s')} s",
                 f"cpu {v(ls, f'missions_{m}_cli_cpu_s')} s; `aismm --help` "
                 f"{v(ls, 'cli_start_s')} s"))
    sv = sections["serve"]
    rows.append(("serve idle CPU (no traffic, 3 s)", f"{v(sv, 'idle_cpu_pct', '{:.1f}')} %",
                 "of one core; goal < 1 %"))
    wf = sections["workflow"]
    rows.append(("three-step workflow end to end / the three missions by hand (CLI)",
                 f"{v(wf, 'workflow_s', '{:.2f}')} s / {v(wf, 'by_hand_s', '{:.2f}')} s",
                 f"ratio {v(wf, 'workflow_vs_hand', '{:.2f}')}; goal <= 1.5"))
    st = sections["startup"]
    rows.append(("process CPU: `aismm tick` / `mission accept` / full-gate pre-receive (min)",
                 f"{v(st, 'tick_cpu_s')} / {v(st, 'accept_cpu_s')} / "
                 f"{v(st, 'pre_receive_cpu_s')} s",
                 f"x `python -c pass` ({v(st, 'python_pass_cpu_s')} s): "
                 f"{v(st, 'tick_vs_python', '{:.1f}')} / {v(st, 'accept_vs_python', '{:.1f}')} / "
                 f"{v(st, 'pre_receive_vs_python', '{:.1f}')}; import of the services "
                 f"{v(st, 'import_worker_cpu_s')} s"))
    rows.append(("mission status, hubs of " + " / ".join(map(str, sizes)),
                 " / ".join(v(f, f"status_{n}_s", "{:.3f}") for n in sizes) + " s", ""))
    ow = sections["ownership"]
    rows.append((f"export, {ow.get('missions_export', 'n/a')} missions (ours / git bundle + "
                 "sqlite backup)", f"{v(ow, 'export_s')} / {v(ow, 'baseline_s')} s",
                 f"ratio {v(ow, 'export_ratio', '{:.2f}')}; goal <= 1.3"))
    rows.append((f"verify signed objects/s, {ow.get('missions_small', 'n/a')} / "
                 f"{ow.get('missions_large', 'n/a')} missions",
                 f"{v(ow, 'verify_small_per_s', '{:.0f}')} / "
                 f"{v(ow, 'verify_large_per_s', '{:.0f}')} /s",
                 f"time growth ÷ size growth {v(ow, 'verify_growth', '{:.2f}')} (1 = linear)"))
    h = sections["http"]
    rows.append(("HTTP push with the gate / to a hook-less repo, same server (median)",
                 f"{v(h, 'http_push_gate_p50_s')} / {v(h, 'http_push_plain_p50_s')} s",
                 f"ratio {v(h, 'http_push_ratio', '{:.2f}')}"))
    rows.append(("marketplace page, 1,000 listed agents (p50 / p95)",
                 f"{v(h, 'page_p50_s')} / {v(h, 'page_p95_s')} s",
                 f"{v(h, 'page_rps', '{:.1f}')} req/s from a second process"))
    rows.append(("GET /api/agents, 1,000 listed agents (p50 / p95)",
                 f"{v(h, 'api_p50_s')} / {v(h, 'api_p95_s')} s",
                 f"{v(h, 'api_rps', '{:.1f}')} req/s from a second process"))

    print(f"AISMM benchmarks{' (quick)' if quick else ''} — {machine()}")
    one, five, fifteen = os.getloadavg()
    print(f"  load average now {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min) on "
          f"{os.cpu_count()} cores: wall-clock figures above 1 load per core include waiting")
    width = max(len(row[0]) for row in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:<28} {note}")
    for name, data in sections.items():
        if "error" in data:
            print(f"  {name}: ERROR {data['error']}")


if __name__ == "__main__":
    main()
