"""sloppy-coder: a deliberately careless specialist whose work fails the DoD (for tests/demos).

Deterministic: the same inputs always give the same wrong deliverable.
"""

from __future__ import annotations

from aismm.agents.runtime import Invocation, run, write_json, write_text

__all__ = ["main"]


def _code_review(inv: Invocation) -> None:
    first = min((inv.root / "inputs" / "src").glob("*.py")).relative_to(inv.root)
    finding = {"file": first.as_posix(), "line": 9999, "rule": "style", "message": "looks off"}
    write_json(inv.deliverable / "findings.json", {
        "findings": [finding, finding, {"file": "inputs/src/missing.py", "line": 1,
                                        "rule": "style", "severity": "critical"}],
    })
    write_text(inv.deliverable / "scratch.txt", "todo: actually read the code")


def _schema_design(inv: Invocation) -> None:
    write_json(inv.deliverable / "schema.json", {"type": "object"})


def _unit_tests(inv: Invocation) -> None:
    write_text(inv.deliverable / "test_module.py",
               "import module\n\n\ndef test_everything():\n    assert module.main() == 'ok'\n")


def _serve(inv: Invocation) -> None:
    {"contract.code_review": _code_review, "contract.schema_design": _schema_design,
     "contract.unit_tests": _unit_tests}[inv.contract.id](inv)


def main() -> int:
    """Entry point for ``python -m aismm.agents.sloppy``."""
    return run(_serve, ("contract.code_review", "contract.schema_design", "contract.unit_tests"))


if __name__ == "__main__":
    raise SystemExit(main())
