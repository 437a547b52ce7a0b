"""code_review check: every finding points at a real line of ``inputs/src``; none repeats.

Run in a checkout: ``python -m aismm.checks.findings``. Prints one line per problem; exit 0 = pass.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from aismm.checks import report

__all__ = ["check", "main"]

FINDINGS = "deliverable/findings.json"


def check(root: Path) -> list[str]:
    """Problems with ``deliverable/findings.json`` against the sources under ``inputs/src``."""
    try:
        data = json.loads((root / FINDINGS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{FINDINGS}: missing; deliver the findings file"]
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"{FINDINGS}: not valid JSON ({exc}); write a JSON object"]
    if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
        return [
            f"{FINDINGS}: expected an object with a 'findings' list; see the deliverable schema"
        ]
    sources = {
        path.relative_to(root).as_posix(): path.read_text(encoding="utf-8").splitlines()
        for path in sorted((root / "inputs" / "src").glob("*.py"))
    }
    findings: list[Any] = data["findings"]
    problems = [*_anchors(findings, sources), *_summary(data.get("summary"), findings, sources)]
    return problems


def _anchors(findings: list[Any], sources: dict[str, list[str]]) -> list[str]:
    problems = []
    seen: set[tuple[Any, ...]] = set()
    for index, finding in enumerate(findings):
        where = f"{FINDINGS}: findings/{index}"
        if not isinstance(finding, dict):
            problems.append(
                f"{where}: not an object; write {{file, line, rule, severity, message}}"
            )
            continue
        file, line, rule = finding.get("file"), finding.get("line"), finding.get("rule")
        if file not in sources:
            problems.append(
                f"{where}: file {file!r} is not one of inputs/src/*.py; name a reviewed file"
            )
            continue
        lines = sources[file]
        if not isinstance(line, int) or isinstance(line, bool) or not 1 <= line <= len(lines):
            problems.append(
                f"{where}: line {line!r} is outside {file} (1-{len(lines)}); point at a real line"
            )
        elif not lines[line - 1].strip():
            problems.append(f"{where}: {file}:{line} is a blank line; point at the offending code")
        key = (file, line, rule)
        if key in seen:
            problems.append(f"{where}: repeats {file}:{line} {rule}; report each finding once")
        seen.add(key)
    return problems


def _summary(summary: Any, findings: list[Any], sources: dict[str, list[str]]) -> list[str]:
    where = f"{FINDINGS}: summary"
    if not isinstance(summary, dict):
        return [f"{where}: missing; add {{files_reviewed, total, by_severity}}"]
    problems = []
    if summary.get("total") != len(findings):
        problems.append(
            f"{where}: total is {summary.get('total')!r} but there are {len(findings)} findings;"
            " make them agree"
        )
    if summary.get("files_reviewed") != len(sources):
        problems.append(
            f"{where}: files_reviewed is {summary.get('files_reviewed')!r} but inputs/src has"
            f" {len(sources)} files; review every file"
        )
    counted = Counter(f.get("severity") for f in findings if isinstance(f, dict))
    declared = summary.get("by_severity")
    if isinstance(declared, dict):
        for severity in sorted(set(counted) | set(declared), key=str):
            if declared.get(severity, 0) != counted.get(severity, 0):
                problems.append(
                    f"{where}: by_severity/{severity} is {declared.get(severity, 0)} but"
                    f" {counted.get(severity, 0)} findings have it; make them agree"
                )
    return problems


def main() -> int:
    """Entry point: check the checkout in the current directory."""
    problems = check(Path.cwd())
    return report(problems)


if __name__ == "__main__":
    sys.exit(main())
