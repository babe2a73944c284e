"""The layers of moebench (issue 28 item 5): the import-linter contracts in pyproject.toml.

``lint-imports`` checks the contracts themselves (in CI, and here when import-linter is
installed); these tests also check that the top-level contract places every module, since
import-linter's ``exhaustive`` option works only for contracts with containers.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from moebench.io import tomllib

ROOT = Path(__file__).resolve().parents[1]
#: the source folders of the two root packages (baselines/ is installed as moebench.baselines)
SOURCES = {"moebench": ROOT / "moebench", "baselines": ROOT / "baselines"}
#: packages the top-level contract leaves out on purpose (said in the contract's comment)
CONTAINERS = {"moebench", "moebench.tensor"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _contract(contract_id: str) -> dict:
    contracts = _pyproject()["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["id"] == contract_id)


def _modules() -> set[str]:
    """Every Python module of the source tree, as the linter names it."""
    names = set()
    for root, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.add(".".join((root, *parts)))
    return names


def _layer_entries(layers: list[str]) -> list[str]:
    return [name.strip() for layer in layers for name in layer.replace(":", "|").split("|")]


def test_the_top_level_contract_places_every_module():
    entries = _layer_entries(_contract("layers")["layers"])
    assert len(entries) == len(set(entries)), "a module is placed in two layers"
    modules = _modules()
    unknown = [e for e in entries if e not in modules]
    assert not unknown, f"layers name modules that do not exist: {unknown}"

    def placed(module: str) -> bool:
        parts = module.split(".")
        return any(".".join(parts[:i]) in entries for i in range(1, len(parts) + 1))

    missing = sorted(m for m in modules - CONTAINERS if not placed(m))
    assert not missing, (f"modules in no layer of pyproject.toml's [tool.importlinter] "
                         f"contract 'layers' (place each, with a comment): {missing}")


def test_the_layers_follow_the_issue_order():
    """cli > sweep > algorithms > shared numerics > estimator contract > model > leaves."""
    entries = _layer_entries(_contract("layers")["layers"])
    order = ["moebench.cli", "moebench.sweep", "baselines", "moebench.em", "moebench.backend",
             "moebench.registry", "moebench.base", "moebench.model", "moebench.validation",
             "moebench.io"]
    assert [entries.index(name) for name in order] == sorted(entries.index(n) for n in order)


def test_lint_imports_keeps_every_contract():
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]'); CI runs it")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    contracts = _pyproject()["tool"]["importlinter"]["contracts"]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in proc.stdout


@pytest.mark.parametrize("old", ["moebench.cli_checks", "moebench.sweep.cli",
                                 "moebench.sweep.store.verbs", "moebench.tensor.backend",
                                 "moebench.tensor._fused"])
def test_moved_modules_are_gone(old):
    # not in this source tree (an editable install of another checkout may still map one)
    spec = importlib.util.find_spec(old)
    assert spec is None or ROOT not in Path(spec.origin).resolve().parents


def test_pyproject_packages_every_package_folder():
    """A wheel holds only the listed packages: each folder with an __init__.py is listed."""
    setuptools = _pyproject()["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    folders = {"moebench." + ".".join(p.parent.relative_to(SOURCES["moebench"]).parts)
               for p in SOURCES["moebench"].rglob("__init__.py")} - {"moebench."}
    folders |= {"moebench", "moebench.baselines"}
    assert folders == listed
    assert setuptools["package-dir"]["moebench.baselines"] == "baselines"


#: above this many lines a module says why in a "Size:" paragraph of its docstring
MODULE_LINES = 600


def test_large_modules_say_why():
    """No module of moebench or baselines exceeds ~600 lines without a reason (issue 28)."""
    import ast

    silent = []
    for root in SOURCES.values():
        for path in root.rglob("*.py"):
            text = path.read_text()
            if text.count("\n") > MODULE_LINES:
                doc = ast.get_docstring(ast.parse(text)) or ""
                if "\nSize:" not in "\n" + doc:
                    silent.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert not silent, f"over {MODULE_LINES} lines with no 'Size:' reason: {silent}"
