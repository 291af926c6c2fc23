"""Table code never imports torch: the table rules run in envs/tables.yaml, which has neither
torch nor transformers. Each table rule's script imports run where importing those fails."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "transformers")  # envs/model.yaml's, absent from envs/tables.yaml
# Table-only packages, checked whole (not every module of them is imported by a table script).
TABLE_PACKAGES = ("saeflow.analysis", "saeflow.dashboard")


def table_scripts() -> list[str]:
    """scripts/*.py of every rule (or checkpoint) whose conda env is envs/tables.yaml."""
    found = []
    for rules in sorted((ROOT / "rules").glob("*.smk")):
        for rule in re.split(r"^\s*(?:rule|checkpoint) \w+:", rules.read_text(), flags=re.M)[1:]:
            if "envs/tables.yaml" in rule:
                found += re.findall(r'"\.\./(scripts/\w+\.py)"', rule)
    return found


def script_imports(script: str) -> str:
    """The script's import statements (the script itself needs Snakemake to run)."""
    tree = ast.parse((ROOT / script).read_text())
    return "\n".join(ast.unparse(node) for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)))


def import_without_torch(code: str) -> subprocess.CompletedProcess:
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in BLOCKED)  # any import of them fails
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", f"import sys\n{blocked}{code}"], cwd=ROOT, env=env,
                          capture_output=True, text=True)


def test_the_table_rules_are_found():
    assert {"scripts/plan_chunks.py", "scripts/analyse_feature_shard.py", "scripts/dashboard.py",
            "scripts/unit_map.py", "scripts/autointerp_prompts.py"} <= set(table_scripts())


@pytest.mark.parametrize("script", table_scripts())
def test_table_script_imports_without_torch(script):
    result = import_without_torch(script_imports(script))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("package", TABLE_PACKAGES)
def test_table_package_imports_without_torch(package):
    result = import_without_torch(
        f"import importlib, pkgutil, {package} as package\n"
        "for module in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "    importlib.import_module(module.name)\n")
    assert result.returncode == 0, result.stderr


def test_blocking_works():
    assert "import of torch halted" in import_without_torch("import torch").stderr
