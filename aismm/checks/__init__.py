"""DoD check programs, each run as ``python -m aismm.checks.<name>`` inside a checkout.

A check reads ``inputs/`` and ``deliverable/`` relative to the current directory, prints one
line per problem and exits 0 when the deliverable passes. Only the standard library, PyYAML
and jsonschema are used, so checks run wherever the hub's interpreter runs.

Checks run inside the sandbox; they may start their own child processes, which stay inside it.
A check never imports agent code itself: ``run_tests`` and ``mutants`` run the agent's tests in
a child (``testrun``) and trust only its complete, nonce-tagged report.

::

    findings     contract.code_review   findings point at real lines, no duplicates, summary adds up
    schema_fit   contract.schema_design valid schema, accepts every sample, rejects counter-examples
    run_tests    contract.unit_tests    every test passes against the module, at least N tests
    mutants      contract.unit_tests    stubbing any public function makes a test fail
    testrun      run_tests, mutants     the child process that imports and runs an agent's tests
    workflow     workflow contracts     the assembled report matches the orchestration records
    expect       benchmarks             score a deliverable against a task's expect.yaml
    local        benchmarks and tests   run a contract's whole DoD against a local folder
"""


def report(problems: list[str], most: int = 50) -> int:
    """Print up to ``most`` problems, one per line; the check's exit status (0 = pass)."""
    for line in problems[:most]:
        print(line)
    if len(problems) > most:
        print(f"... and {len(problems) - most} more problems")
    return 1 if problems else 0
