"""The architecture is a checked contract: each import-linter contract breaks on a
deliberate violation (so none of them passes by matching nothing), and every module stays
small enough to read."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_MODULE_LINES = 400

# (contract's name as lint-imports prints it, the module to change, the line added to it)
VIOLATIONS = [
    ("Capabilities in layers, top to bottom", "webapp/sending/submission.py",
     "from webapp.lists import states  # sending may not use lists, which sits above it"),
    ("Capabilities in layers, top to bottom", "webapp/messages/opt_outs.py",
     "from webapp.callbacks import ledger  # the shared package may not use a capability"),
    ("Views and forms are imported by nothing below them", "webapp/history/pages.py",
     "import webapp.history.views  # a service importing its own package's views"),
    ("Only the gateway's client imports the Plivo SDK", "webapp/sending/dispatch.py",
     "import plivo"),
    ("The simulator stands apart", "webapp/gateway/simulator/server.py",
     "from webapp import models"),
    ("No import cycles between sibling modules", "webapp/lists/states.py",
     "from webapp.lists import controls  # controls imports states: a cycle"),
]


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          check=False)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    if not LINT_IMPORTS.exists():
        pytest.skip("lint-imports is not installed (make install-dev)")
    tree = tmp_path_factory.mktemp("architecture")
    shutil.copytree(ROOT / "webapp", tree / "webapp",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_contracts_hold_on_the_code_as_it_is(scratch):
    result = lint_imports(scratch)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("contract", "module", "line"), VIOLATIONS)
def test_each_contract_breaks_on_a_deliberate_violation(scratch, contract, module, line):
    target = scratch / module
    original = target.read_text()
    target.write_text(original + "\n" + line + "\n")
    try:
        result = lint_imports(scratch)
    finally:
        target.write_text(original)
    assert result.returncode != 0, result.stdout[-3000:]
    broken = [row for row in result.stdout.splitlines() if "BROKEN" in row]
    assert any(row.startswith(contract) for row in broken), (contract, broken)


def test_no_module_is_over_four_hundred_lines():
    """A module that grows a second flow splits before it gets here (STYLE.md); a module
    near the limit says at its top why it is one piece."""
    sizes = {str(path.relative_to(ROOT)): len(path.read_text().splitlines())
             for path in (ROOT / "webapp").rglob("*.py")}
    assert not {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert len(sizes) > 60  # the walk found the code
