"""The "Adding a baseline" example (docs/adding_a_baseline.md) works as the page says.

The example lives in ``docs/examples/my_baseline.py`` (the docs page quotes it
verbatim). Dropped into a folder of the ``moebench.baselines`` package it is
discovered by the registry, listed by ``moebench list``, passes
``moebench.testing.check_algorithm``, and runs in a sweep.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import moebench.baselines
import pytest

from moebench import registry
from moebench.cli import main as cli_main
from moebench.testing import check_algorithm

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "my_baseline.py"


@pytest.fixture
def example_in_baselines(tmp_path, monkeypatch):
    """The example copied into an extra folder of moebench.baselines, registry reloaded."""
    folder = tmp_path / "baselines"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "hard_em.py")
    registry.available_algorithms()  # load the real registry first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(moebench.baselines, "__path__",
                        [*moebench.baselines.__path__, str(folder)])
    yield
    sys.modules.pop("moebench.baselines.hard_em", None)


def test_example_is_discovered_listed_and_passes_the_contract(example_in_baselines, capsys):
    assert "hard_em" not in registry._REGISTRY
    assert "hard_em" in registry.available_algorithms()
    assert cli_main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "hard_em" in listed and "classification (hard) EM" in listed
    check_algorithm("hard_em")


def test_example_runs_in_a_sweep(tmp_path):
    """In a fresh interpreter (sweep workers import the module that registered the algorithm)."""
    shutil.copy(EXAMPLE, tmp_path / "my_baseline.py")
    script = textwrap.dedent("""
        import json, sys
        import my_baseline  # noqa: F401 - registers "hard_em"
        from moebench.sweep import run_sweep
        from moebench.sweep.config import validate_config

        config = validate_config({
            "name": "hard_em_example", "seed": 0, "repetitions": 1,
            "data": {"n": 4000, "d": 5, "k": 2, "activation": "linear", "sigma": 0.1,
                     "n_test": 1000},
            "budget": {"max_time": 30.0, "timeout": 120.0},
            "algorithm": [{"name": "hard_em"}],
        })
        outcome = run_sweep(config, sys.argv[1], jobs=1, progress=False)
        print(json.dumps([{k: s.get(k) for k in ("label", "status", "expert_error")}
                          for s in outcome.summaries]))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (summary,) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["label"] == "hard_em" and summary["status"] == "ok", summary
    assert summary["expert_error"] < 0.1, summary


PAGE = EXAMPLE.parents[1] / "adding_a_baseline.md"


def test_docs_quote_the_example_verbatim():
    """The docs page's code block is docs/examples/my_baseline.py, byte for byte.

    (Until issue 16 the README quoted it; the README now links to the docs page.)
    """
    page = PAGE.read_text()
    example = EXAMPLE.read_text()
    start = page.index('```python\n"""Classification EM') + len("```python\n")
    end = page.index("```\n", start)
    assert page[start:end] == example


def test_docs_config_block_is_valid_with_the_example(example_in_baselines):
    """The page's ``[[algorithm]]`` block for hard_em passes the config validator."""
    from moebench.sweep.config import tomllib, validate_config  # tomli on Python 3.10

    page = PAGE.read_text()
    start = page.index("```toml\n[[algorithm]]\nname = \"hard_em\"") + len("```toml\n")
    block = tomllib.loads(page[start:page.index("```\n", start)])
    config = validate_config({"data": {"n": 2000, "d": 5, "k": 2}, **block})
    assert [v.algorithm for v in config.variants] == ["hard_em"]
    assert config.variants[0].params == {"ridge": 1e-3}
