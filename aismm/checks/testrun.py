"""Run an agent's tests in a child process and trust only what the checker can verify.

Checks run inside the sandbox; they may start their own child processes, which stay inside it.
Agent code (the client's ``inputs/module.py`` and the agent's test file) is never imported by a
checker: :func:`run_suite` copies both into a fresh temporary folder and starts the child there
as ``python -P -m aismm.checks.testrun`` would (a fork of the checker, which has run no agent
code: no new interpreter per run), in a session of its own, with no descriptor but its own
pipes, a scrubbed environment, the interpreter's own module path and a wall-clock limit (the
checker makes itself non-dumpable first, so the child, of the same uid, can neither trace it nor
open its ``/proc/PID/mem`` to rewrite the verdict). The
launcher refuses to start unless ``AISMM_SANDBOX`` is set (the sandbox sets it to its isolation
level; ``AISMM_SANDBOX=rlimits-only`` opts in to running agent code unconfined on purpose) or it
runs inside the test suite (``PYTEST_CURRENT_TEST``).

How a verdict is derived, outside the child:

- the tests expected are collected statically (:func:`collect`): top-level ``def test*``
  functions and ``test*`` methods of top-level ``class Test*``, in file order; never by
  executing agent code. A test that takes arguments, is async or is a generator fails as written;
- the child reads a random nonce from stdin into a local before importing any agent code, points
  file descriptors 1 and 2 at ``/dev/null`` (agent prints never reach the report pipe), and
  writes one line per test tagged with the nonce, then ``done``. Everything it calls after the
  import was captured beforehand, so monkeypatching this module, ``unittest`` or ``builtins``
  changes nothing it reports;
- the run counts only when it is complete: every expected test reported exactly once and in
  order, ``done`` last, exit status 0, every line carrying the nonce. Anything else (``os._exit``
  or ``sys.exit`` at import or in a test, a crash, a timeout, a foreign line) is an incomplete run
  and fails, whatever the child printed; files the tests write are never read.

A test that digs the nonce out of the runner's frames can still forge "pass" lines; the same
forgery then passes every stub mutant as well, so the ``mutants`` check (a mutant is killed only
by a complete run in which a test raised) fails it — unless it forges only when no function is a
stub, which beats both checks: tests/test_check_forgery.py keeps that forgery as an expected
failure until the report has a channel agent code cannot write.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import os
import secrets
import selectors
import shutil
import signal
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aismm.core.errors import UsageError

__all__ = [
    "MODULE_NAME",
    "SuiteResult",
    "TestOutcome",
    "TestSpec",
    "collect",
    "main",
    "run_suite",
]

MODULE_NAME = "module"
_TEST_MODULE = "_aismm_tests"
_STDOUT_CAP = 4 << 20  # bytes of report the checker reads; more makes the run incomplete
_STDERR_CAP = 64 << 10
_DRAIN_SECONDS = 0.5  # how long the pipes are still read after the child has exited
_STATUSES = ("pass", "fail", "error")


@dataclass(frozen=True)
class TestSpec:
    """One test found statically: its id and, when it cannot run as written, why."""

    name: str
    problem: str = ""


@dataclass(frozen=True)
class TestOutcome:
    """The result of one test; ``raised`` when the test itself raised (an explicit failure)."""

    name: str
    passed: bool
    detail: str = ""
    raised: bool = False


@dataclass(frozen=True)
class SuiteResult:
    """All outcomes of a complete run, or the reason there are none to trust."""

    outcomes: tuple[TestOutcome, ...]
    error: str | None = None
    complete: bool = True

    @property
    def failures(self) -> list[TestOutcome]:
        return [o for o in self.outcomes if not o.passed]

    @property
    def passed(self) -> bool:
        return self.complete and self.error is None and bool(self.outcomes) and not self.failures

    @property
    def raised(self) -> bool:
        """Whether the run completed and at least one test raised."""
        return self.complete and self.error is None and any(o.raised for o in self.outcomes)


# --- static collection (shared by the checker and the child) --------------------------------


def _problem(node: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> str:
    if isinstance(node, ast.AsyncFunctionDef):
        return "is async; write a plain function"
    decorators = {d.id for d in node.decorator_list if isinstance(d, ast.Name)}
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    required = positional[:len(positional) - len(args.defaults)]
    if method and "staticmethod" not in decorators:
        required = required[1:]  # self, or cls of a classmethod
    required += [a for a, default in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                 if default is None]
    if required:
        names = ", ".join(a.arg for a in required)
        return f"takes arguments ({names}); fixtures are not supported"
    if any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in _own_nodes(node)):
        return "is a generator, so its body would never run; write a plain function"
    return ""


def _own_nodes(node: ast.AST) -> list[ast.AST]:
    """Nodes of a function body, not descending into nested functions, classes or lambdas."""
    found: list[ast.AST] = []
    stack = list(ast.iter_child_nodes(node))
    while stack:
        child = stack.pop()
        found.append(child)
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                  ast.Lambda)):
            stack.extend(ast.iter_child_nodes(child))
    return found


def collect(source: str | bytes) -> list[TestSpec]:
    """The tests of a file, statically and in file order (a redefinition keeps its first place).

    Raises SyntaxError or ValueError when the source is not Python.
    """
    tree = ast.parse(source)
    found: dict[str, TestSpec] = {}

    def add(name: str, node: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> None:
        found[name] = TestSpec(name, _problem(node, method))  # a redefinition keeps the place

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                and node.name.startswith("test"):
            add(node.name, node, False)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                        and item.name.startswith("test"):
                    add(f"{node.name}.{item.name}", item, True)
    return list(found.values())


# --- the checker's side -------------------------------------------------------------------


def _package_root() -> Path:
    """The folder that holds the ``aismm`` package (the child's only PYTHONPATH entry)."""
    return Path(__file__).resolve().parent.parent.parent


def _require_sandbox() -> None:
    if os.environ.get("AISMM_SANDBOX") or os.environ.get("PYTEST_CURRENT_TEST"):
        return
    raise UsageError(
        "aismm.checks: agent code runs only inside the sandbox and AISMM_SANDBOX is not set;"
        " run the check through aismm.infra.sandbox.run (or set AISMM_SANDBOX=rlimits-only to run"
        " agent code unconfined on purpose)"
    )


def _child_env(home: Path) -> dict[str, str]:
    env = {
        "PATH": os.defpath,
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(_package_root()),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
    }
    if not sys.flags.hash_randomization:  # the child (a fork) hashes as this checker does:
        env["PYTHONHASHSEED"] = "0"  # with seed 0 (as every check in the sandbox), say so
    if os.environ.get("AISMM_SANDBOX"):
        env["AISMM_SANDBOX"] = os.environ["AISMM_SANDBOX"]
    return env


def _clean(text: str, most: int = 200) -> str:
    """Child-supplied text made safe to print: one line, printable, bounded."""
    text = " ".join(text.split())
    return "".join(c if c.isprintable() else "?" for c in text)[:most]


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _dumpable(on: bool) -> None:
    """``prctl(PR_SET_DUMPABLE)``: a process that is not dumpable cannot be traced, nor its
    ``/proc/PID/mem`` opened, by a process of its uid without CAP_SYS_PTRACE (the test run)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, ctypes.c_ulong(int(on)), ctypes.c_ulong(0), ctypes.c_ulong(0),
                  ctypes.c_ulong(0)) != 0:  # 4: PR_SET_DUMPABLE
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")


def _fork(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, int, int, int]:
    """Start the child as ``python -P -m aismm.checks.testrun ARGS`` would, without starting
    an interpreter: a fork of this checker (which has run no agent code) that takes a session,
    pipes for fds 0-2 and nothing else, the run's folder, environment and module path, then
    runs :func:`main`. (pid, stdin write end, stdout read end, stderr read end)."""
    ends = [os.pipe() for _ in range(3)]
    here = os.path.realpath(os.getcwd())  # the checkout: `python -P` never puts it on the path
    path = [str(_package_root()), *(p for p in sys.path if p and os.path.realpath(p) != here
                                    and p != str(_package_root()))]
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    _dumpable(False)  # the checker: the child (same uid) may neither ptrace it nor open its mem
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 125
        try:
            _dumpable(True)  # its own memory, as after an exec: its /proc/self is its own
            os.setsid()
            for fd, (read, write) in enumerate(ends):
                os.dup2(read if fd == 0 else write, fd)
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(env)
            tempfile.tempdir = None  # found again from TMPDIR, as a new process would
            sys.path[:] = path
            sys.argv = [__file__, *args]
            # the child's own fd 0, read once by main(); the process ends with main()
            sys.stdin = open(0, encoding="ascii", errors="replace", closefd=False)  # noqa: SIM115
            main()
        except BaseException:  # nothing of the child may reach the checker
            code = 125
        os._exit(code)
    for fd, (read, write) in enumerate(ends):
        os.close(read if fd == 0 else write)
    return pid, ends[0][1], ends[1][0], ends[2][0]


def _spawn(args: list[str], cwd: Path, env: dict[str, str], nonce: str,
           seconds: float) -> tuple[int | None, bytes, bytes, bool]:
    """Run the child; (exit status or None on timeout, stdout, stderr, stdout overflowed)."""
    pid, stdin, stdout, stderr = _fork(args, cwd, env)
    deadline = time.monotonic() + seconds
    with contextlib.suppress(OSError):  # the child is already gone; what it printed still tells
        os.write(stdin, f"{nonce}\n".encode())
    os.close(stdin)
    out, err = bytearray(), bytearray()
    overflow, exited = False, False
    pidfd = os.pidfd_open(pid)
    until = deadline
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ, out)
            selector.register(stderr, selectors.EVENT_READ, err)
            selector.register(pidfd, selectors.EVENT_READ, None)
            while selector.get_map() and time.monotonic() < until:
                for key, _ in selector.select(max(0.0, until - time.monotonic())):
                    if key.data is None:
                        exited = True
                        until = min(deadline, time.monotonic() + _DRAIN_SECONDS)
                        selector.unregister(pidfd)
                        continue
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        continue
                    cap = _STDOUT_CAP if key.data is out else _STDERR_CAP
                    room = max(0, cap - len(key.data))
                    overflow = overflow or (key.data is out and len(chunk) > room)
                    key.data.extend(chunk[:room])
    finally:
        os.close(pidfd)
        _kill_group(pid)  # whatever the tests left behind
        _, status = os.waitpid(pid, 0)
        os.close(stdout)
        os.close(stderr)
    code = os.waitstatus_to_exitcode(status)
    return (code if exited else None), bytes(out), bytes(err), overflow


def _incomplete(why: str) -> SuiteResult:
    return SuiteResult((), why, complete=False)


def _verdict(label: str, specs: list[TestSpec], nonce: str, code: int | None, out: bytes,
             err: bytes, overflow: bool, seconds: float) -> SuiteResult:
    """What the child's report proves; anything short of a complete run fails."""
    if code is None:
        return _incomplete(f"{label}: the test run took longer than {seconds:g}s and was"
                           " stopped")
    if overflow:
        return _incomplete(f"{label}: the test run wrote more than {_STDOUT_CAP} bytes of"
                           " report; results cannot be trusted")
    try:
        text = out.decode("utf-8")
    except UnicodeDecodeError:
        return _incomplete(f"{label}: the test run wrote bytes that are not the runner's"
                           " report; results cannot be trusted")
    *lines, last = text.split("\n")
    if last:
        lines.append(last)  # an unterminated line is never a report line (refused below)
    prefix = f"{nonce} "
    results: list[tuple[str, str, str]] = []
    error: str | None = None
    done = False
    for number, line in enumerate(lines):
        if not line.startswith(prefix) or done or (last and number == len(lines) - 1):
            return _incomplete(f"{label}: the test run printed a line that is not the runner's"
                               " report; results cannot be trusted")
        kind, _, rest = line[len(prefix):].partition(" ")
        if kind == "done" and rest == "":
            done = True
        elif kind == "error" and not results and error is None:
            error = _clean(rest, 300)
        elif kind == "test" and error is None:
            status, _, rest = rest.partition(" ")
            name, _, detail = rest.partition(" ")
            if status not in _STATUSES:
                return _incomplete(f"{label}: the test run reported an unknown status;"
                                   " results cannot be trusted")
            if len(results) >= len(specs) or specs[len(results)].name != name:
                seen = any(r[0] == name for r in results)
                what = "twice" if seen else "that the file does not define"
                return _incomplete(f"{label}: the test run reported a test {what}"
                                   f" ({_clean(name, 80)}); results cannot be trusted")
            results.append((name, status, _clean(detail)))
        else:
            return _incomplete(f"{label}: the test run printed a line that is not the runner's"
                               " report; results cannot be trusted")
    if not done:
        stage = "at import" if not results and error is None else \
            f"after {len(results)} of {len(specs)} tests"
        why = f"exit {code}" if code >= 0 else f"killed by signal {-code}"
        tail = _clean(err.decode("utf-8", "replace").strip().splitlines()[-1]) \
            if err.strip() else ""
        return _incomplete(f"{label}: the test run ended before reporting every test ({why}"
                           f" {stage}?{'; ' + tail if tail else ''})")
    if code != 0:
        return _incomplete(f"{label}: the test run exited with status {code} after its report;"
                           " results cannot be trusted")
    if error is not None:
        return SuiteResult((), error)
    if len(results) != len(specs):
        return _incomplete(f"{label}: the test run reported {len(results)} of {len(specs)}"
                           " tests; results cannot be trusted")
    outcomes = []
    for spec, (name, status, detail) in zip(specs, results, strict=True):
        if spec.problem:
            outcomes.append(TestOutcome(name, False, spec.problem))
        else:
            outcomes.append(TestOutcome(name, status == "pass", detail, raised=status == "fail"))
    return SuiteResult(tuple(outcomes))


def run_suite(tests: Path, module_source: str, inputs: Path, *, per_test_seconds: float = 10.0,
              timeout: float | None = None) -> SuiteResult:
    """Run ``tests`` against ``module_source`` (as ``inputs/module.py``) in a child process."""
    _require_sandbox()
    try:
        source = tests.read_bytes()
        specs = collect(source)
    except OSError as exc:
        return SuiteResult((), f"{tests.name}: cannot be read ({_clean(str(exc))})")
    except (SyntaxError, ValueError) as exc:
        return SuiteResult((), f"{tests.name}: fails to import ({type(exc).__name__}:"
                               f" {_clean(str(exc))})")
    seconds = timeout if timeout is not None else per_test_seconds * (len(specs) + 2) + 10
    with tempfile.TemporaryDirectory(prefix="aismm-testrun-") as tmp:
        root = Path(tmp)
        if inputs.is_dir():
            shutil.copytree(inputs, root / "inputs", ignore_dangling_symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        (root / "inputs").mkdir(exist_ok=True)
        (root / "inputs" / "module.py").write_text(module_source, encoding="utf-8")
        (root / "deliverable").mkdir(exist_ok=True)
        (root / "deliverable" / tests.name).write_bytes(source)
        (root / "home").mkdir()
        nonce = secrets.token_hex(16)
        args = [f"deliverable/{tests.name}", "inputs", f"{per_test_seconds:g}"]
        code, out, err, overflow = _spawn(args, root, _child_env(root / "home"), nonce, seconds)
    return _verdict(tests.name, specs, nonce, code, out, err, overflow, seconds)


# --- the child's side ----------------------------------------------------------------------


class _Expired(Exception):
    """A test ran longer than its time budget."""


def main() -> None:
    """Child entry point: import the module and the tests, run each, report over fd 1, exit."""
    # Everything used after agent code has run is bound here first, as locals.
    write, exit_, getattr_, callable_, type_, str_ = (os.write, os._exit, getattr, callable,
                                                      type, str)
    setitimer, on_signal, ITIMER, SIGALRM = (signal.setitimer, signal.signal,
                                             signal.ITIMER_REAL, signal.SIGALRM)
    compile_, exec_, modules, ModuleType = compile, exec, sys.modules, types.ModuleType
    Base, Expired = BaseException, _Expired

    nonce = sys.stdin.buffer.readline().decode("ascii", "replace").strip()
    tests_rel, inputs_rel, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    report = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)  # agent prints and reads never touch the report pipe or the nonce
    os.close(null)
    sys.dont_write_bytecode = True
    tests_path = os.path.abspath(tests_rel)
    inputs_dir = os.path.abspath(inputs_rel)
    module_path = os.path.join(inputs_dir, "module.py")

    def emit(line: str) -> None:
        data = f"{nonce} {line}\n".encode("utf-8", "replace")
        while data:
            data = data[write(report, data):]

    def describe(exc: BaseException) -> str:
        try:
            name = type_(exc).__name__
            text = str_(exc)
            name = name if type_(name) is str_ else "Exception"
            text = text if type_(text) is str_ else ""
        except Base:  # an exception that cannot describe itself
            return "an exception that cannot be printed"
        return " ".join(f"{name}: {text}".strip().rstrip(":").split())[:200]

    fired = [False]

    def expired(signum: int, frame: object) -> None:
        fired[0] = True
        raise Expired(f"took longer than {seconds:g}s")

    def guarded(step: Callable[[], object]) -> tuple[bool, str]:
        """Run step() under the per-test alarm; (True, "") or (False, why)."""
        fired[0] = False
        on_signal(SIGALRM, expired)
        setitimer(ITIMER, seconds)
        try:
            step()
        except Base as exc:  # whatever the agent's code raised is its outcome
            setitimer(ITIMER, 0)
            return False, (f"took longer than {seconds:g}s" if fired[0] else describe(exc))
        setitimer(ITIMER, 0)
        return True, ""

    try:
        with open(tests_path, "rb") as handle:
            test_source = handle.read()
        with open(module_path, "rb") as handle:
            module_source = handle.read()
        specs = collect(test_source)
        test_code = compile_(test_source, tests_path, "exec", dont_inherit=True)
        module_code = compile_(module_source, module_path, "exec", dont_inherit=True)
    except Exception as exc:  # the checker already refuses unparsable files
        emit(f"error {os.path.basename(tests_path)}: fails to import ({describe(exc)})")
        emit("done")
        exit_(0)

    sys.path.insert(0, inputs_dir)
    module = ModuleType(MODULE_NAME)
    module.__file__ = module_path
    modules[MODULE_NAME] = module
    ok, why = guarded(lambda: exec_(module_code, module.__dict__))
    if not ok:
        emit(f"error inputs/module.py: fails to import ({why})")
        emit("done")
        exit_(0)
    tests = ModuleType(_TEST_MODULE)
    tests.__file__ = tests_path
    modules[_TEST_MODULE] = tests
    ok, why = guarded(lambda: exec_(test_code, tests.__dict__))
    if not ok:
        emit(f"error {os.path.basename(tests_path)}: fails to import ({why})")
        emit("done")
        exit_(0)

    instances: dict[str, tuple[object, str]] = {}
    for spec in specs:
        if spec.problem:
            emit(f"test error {spec.name} {spec.problem}")
            continue
        owner, _, attr = spec.name.rpartition(".")

        def resolve(owner: str = owner, attr: str = attr) -> object:
            holder: object = tests
            if owner:
                if owner not in instances:
                    made: list[object] = [None]
                    cls = getattr_(tests, owner)
                    good, reason = guarded(lambda: made.__setitem__(0, cls()))
                    instances[owner] = (made[0], "" if good else reason)
                holder, reason = instances[owner]
                if reason:
                    raise RuntimeError(f"class {owner} cannot be instantiated ({reason})")
            return getattr_(holder, attr)

        try:
            test = resolve()
        except Base as exc:  # a test the import removed or broke
            emit(f"test error {spec.name} cannot be found after import ({describe(exc)})")
            continue
        if not callable_(test):
            emit(f"test error {spec.name} is not a function after import")
            continue
        ok, why = guarded(test)
        emit(f"test pass {spec.name}" if ok else
             f"test {'error' if fired[0] else 'fail'} {spec.name} {why}")
    emit("done")
    exit_(0)


if __name__ == "__main__":
    main()
