"""What our own processes load at start-up, and that loading less changed no outcome.

Promises (aismm.core.startup, aismm.core.model, aismm.core.jsonschemas, aismm.cli.main):
importing the services builds no model and loads none of the modules below; the CLI and the
hooks never import ``importlib.metadata`` for pydantic's plugin scan; the full gate judges a
valid document without jsonschema and words a refusal with it; model defaults are the same
values as before; the CLI run as the program still writes all its output and exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aismm.core import contract, jsonschemas
from aismm.core.contract import Contract, load_contract_dir
from aismm.core.errors import ContractError
from aismm.core.model import defaults
from aismm.infra.git import Repo
from aismm.infra.hub import HubConfig, HubLimits
from tests import hubkit
from tests.hubkit import Kit, findings

ROOT = Path(__file__).resolve().parent.parent
# loaded only where they are used: never by importing the services
NOT_AT_IMPORT = ("jsonschema", "importlib.metadata", "email", "urllib.request", "http.client",
                 "concurrent.futures", "compileall", "pydantic.plugin._loader")
R = "refs/heads/attempts/bob"
BAD_DOC = b'{"schema_version": 1, "nope": true}\n'


def _python(code: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, **env}, cwd=ROOT)
    return done.stdout


def test_importing_the_services_builds_no_model_and_loads_no_heavy_module() -> None:
    code = ("import json, sys; import aismm.services.worker, aismm.services.client; "
            "from aismm.core.contract import Contract; from aismm.infra.hub import HubConfig; "
            f"print(json.dumps([sorted(m for m in {NOT_AT_IMPORT!r} if m in sys.modules), "
            "Contract.__pydantic_complete__, HubConfig.__pydantic_complete__]))")
    assert json.loads(_python(code)) == [[], False, False]


def test_the_cli_validates_models_without_the_plugin_scan(tmp_path: Path) -> None:
    """`aismm hub init` validates hub.yaml and the registry's documents; an exit handler (which
    also makes the CLI exit the usual way) reports what the process had loaded."""
    code = ("import atexit, json, sys\n"
            "from aismm.cli import main\n"
            "atexit.register(lambda: print(json.dumps(sorted(m for m in "
            f"{NOT_AT_IMPORT!r} if m in sys.modules)), file=sys.stderr))\n"
            f"sys.argv = ['aismm', '--hub', {str(tmp_path / 'hub')!r}, 'hub', 'init']\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    loaded = json.loads(done.stderr.splitlines()[-1])
    assert "importlib.metadata" not in loaded and "pydantic.plugin._loader" in loaded
    assert (tmp_path / "hub" / "hub.yaml").is_file()
    assert HubConfig.model_validate({}).processing == "inline"  # this process: plugins as usual


def test_the_program_writes_its_output_and_exit_code_when_it_ends_early(tmp_path: Path) -> None:
    """The CLI as a program ends without the interpreter's teardown: every line still reaches
    a pipe, and each exit code is the one main() chose."""
    hub = tmp_path / "hub"
    cli = [sys.executable, "-m", "aismm", "--hub", str(hub)]
    made = subprocess.run([*cli, "hub", "init", "--json"], capture_output=True, text=True,
                          check=False, cwd=ROOT)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)
    tick = subprocess.run([*cli, "tick", "--json"], capture_output=True, text=True,
                          check=False, cwd=ROOT)
    assert (tick.returncode, json.loads(tick.stdout), tick.stderr) == (0, {"lines": []}, "")
    missing = subprocess.run([*cli, "mission", "accept", "nope", "--attempt", "bob"],
                             capture_output=True, text=True, check=False, cwd=ROOT)
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == "aismm: nope: no such mission; see `aismm mission list`\n"
    bad = subprocess.run([*cli, "tick", "--bogus"], capture_output=True, text=True,
                         check=False, cwd=ROOT)
    assert (bad.returncode, bad.stderr) == (
        2, "aismm: tick: no such option --bogus; see aismm tick --help\n")


def test_model_defaults_are_the_values_they_were() -> None:
    assert HubConfig().limits == HubLimits() == defaults(HubLimits)
    assert HubConfig().limits.model_fields_set == HubLimits().model_fields_set == set()
    fields = Contract.model_fields
    for name in ("sla", "disputes", "benchmark"):
        model = fields[name].annotation
        assert isinstance(model, type)
        assert fields[name].default == model(), name
    assert contract.Limits() == defaults(contract.Limits)
    assert HubConfig.model_validate({"limits": {}}).limits == HubConfig().limits


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    yield from hubkit.kit_fixture(tmp_path_factory)


def test_the_full_gate_needs_jsonschema_only_to_word_a_refusal(kit: Kit) -> None:
    """A pre-receive judged in full (``AISMM_LEAN_HOOK=0``, no server): a valid delivery is
    allowed without importing jsonschema; one that fails the contract's schema is refused,
    in jsonschema's words."""
    created = kit.mission()
    clone = kit.clone(created, "attempts/bob")
    repo = Repo(created.path)
    probe = ("import json, sys; import aismm.hook as h; "
             "code, lines = h.handle(h.request_from_env('pre-receive', sys.stdin.buffer.read())); "
             "print(json.dumps([code, 'jsonschema' in sys.modules, lines]))")
    env = {"GIT_DIR": str(created.path), "AISMM_LEAN_HOOK": "0", "AISMM_PUSHER": "bob"}
    results = []
    for data in (findings(1), BAD_DOC):
        new = clone.deliver(kit.key("bob"), data)
        hubkit.run_git("fetch", "-q", str(clone.path), new, cwd=created.path)
        line = f"{repo.refs()[R]} {new} {R}\n"
        done = subprocess.run([sys.executable, "-c", probe], input=line.encode(),
                              env={**os.environ, **env}, capture_output=True, check=True)
        results.append(json.loads(done.stdout))
    assert results[0] == [0, False, []]
    code, loaded, lines = results[1]
    assert (code, loaded) == (1, True)
    assert any("fails the contract schema" in line and "nope" in line for line in lines), lines


def test_schema_checks_read_as_before(tmp_path: Path) -> None:
    """The jsonschema boundary words errors as the inline code did."""
    assert jsonschemas.schema_problem({"type": "object"}) is None
    assert jsonschemas.schema_problem({"type": 3}) == "3 is not valid under any of the given " \
        "schemas"
    assert jsonschemas.document_errors({"type": "object", "required": ["a"]}, {}) == [
        ("(document)", "'a' is a required property")]
    source = ROOT / "contracts" / "code_review"
    folder = tmp_path / "code_review"
    folder.mkdir()
    (folder / "contract.yaml").write_bytes((source / "contract.yaml").read_bytes())
    (folder / "schemas").mkdir()
    names = sorted(p.name for p in (source / "schemas").iterdir())
    (folder / "schemas" / names[0]).write_text('{"type": 3}')
    for name in names[1:]:
        (folder / "schemas" / name).write_text("{not json")
    with pytest.raises(ContractError) as raised:
        load_contract_dir(folder)
    problems = str(raised.value).splitlines()
    assert problems[0] == (f"{folder / 'schemas' / names[0]}: not a valid JSON Schema (3 is not "
                           "valid under any of the given schemas); fix the schema")
    assert all(p.endswith("); fix the schema") and "not a valid JSON Schema (Expecting" in p
               for p in problems[1:])
