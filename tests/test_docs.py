"""The docs cannot rot (issue 16 item 3): what README.md and docs/ show is run or checked.

The rule for code blocks in ``README.md`` and ``docs/**/*.md``:

* every ```` ```python ```` block runs (the blocks of one page in order, in one shared
  namespace, from a temporary directory);
* every ```` ```bash ````, ```` ```sh ````, ```` ```shell ```` or ```` ```console ```` block
  runs in bash from the repository root (a console block: its ``$ `` lines);
* every ```` ```toml ```` block is a sweep config (or a fragment of one) and must pass
  :func:`moebench.sweep.config.validate_config`;
* unless the line right before the opening fence is a marker:
  ``<!-- illustrative: REASON -->`` (shown, not run; the reason is required) or
  ``<!-- tested-by: PATH[::TEST] -->`` (run by that test, which must exist).

Any other ``<!-- ... -->`` right before a fence is an error, so a misspelt marker cannot
silently switch a block off. Also checked: every image the pages show exists under
``results/`` or ``docs/``, every relative link points to an existing file, the generated
config reference and status table cover the validator's schema, every registered
algorithm has its options table, each verb's ``--help`` names an existing docs page, and
the API reference rule covers every public module.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import os
import re
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, *sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)]

SHELL = ("bash", "sh", "shell", "console")
MARKER = re.compile(r"<!--\s*(?P<kind>illustrative|tested-by)\s*:\s*(?P<arg>.*?)\s*-->")
COMMENT = re.compile(r"^<!--.*-->$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str
    line: int
    lang: str
    code: str
    marker: str | None = None  # "illustrative" or "tested-by"
    marker_arg: str = ""

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def parse_blocks(text: str, page: str = "<text>") -> list[Block]:
    """The fenced code blocks of a Markdown text with the marker right before each.

    Raises ValueError for an unclosed fence, a marker without its argument, or an
    HTML comment right before a fence that is not a marker.
    """
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or (m["fence"][0] == "`" and "`" in m["info"]):  # inline code, not a fence
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        end = i + 1
        while end < len(lines) and not re.fullmatch(
                rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*", lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{i + 1}: code fence {fence} is never closed")
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip()
                for ln in lines[i + 1:end]]
        prev = lines[i - 1].strip() if i > 0 else ""
        marker = arg = None
        mm = MARKER.fullmatch(prev)
        if mm:
            marker, arg = mm["kind"], mm["arg"]
            if not arg:
                raise ValueError(f"{page}:{i + 1}: marker {prev!r} needs its "
                                 f"{'reason' if marker == 'illustrative' else 'test'}")
        elif COMMENT.match(prev):
            raise ValueError(f"{page}:{i + 1}: {prev!r} right before a code fence is not a "
                             f"marker; valid: <!-- illustrative: REASON --> or "
                             f"<!-- tested-by: PATH[::TEST] -->")
        lang = info.split()[0].lower() if info else ""
        blocks.append(Block(page, i + 1, lang, "\n".join(body) + "\n", marker, arg or ""))
        i = end + 1
    return blocks


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


ALL_BLOCKS = [b for page in PAGES for b in parse_blocks(page.read_text(), _rel(page))]


def _runnable(lang: tuple[str, ...]) -> list[Block]:
    return [b for b in ALL_BLOCKS if b.lang in lang and b.marker is None]


# --------------------------------------------------------------------------- the marker rule
def test_the_marker_rule():
    text = "\n".join([
        "```python", "a = 1", "```",                                  # unmarked: runs
        "<!-- illustrative: slow -->", "```python", "b = 2", "```",   # marked
        "<!-- illustrative: slow -->", "", "```bash", "ls", "```",    # blank line: unmarked
        "<!-- tested-by: tests/test_docs.py::test_the_marker_rule -->", "```toml",
        "seed = 1", "```",
        "  ```console", "  $ moebench list", "  ```",                 # indented, unmarked
    ])
    blocks = parse_blocks(text)
    assert [(b.lang, b.marker) for b in blocks] == [
        ("python", None), ("python", "illustrative"), ("bash", None), ("toml", "tested-by"),
        ("console", None)]
    assert blocks[1].marker_arg == "slow" and blocks[4].code == "$ moebench list\n"
    with pytest.raises(ValueError, match="needs its reason"):
        parse_blocks("<!-- illustrative: -->\n```python\nx = 1\n```")
    with pytest.raises(ValueError, match="not a marker"):
        parse_blocks("<!-- ilustrative: typo -->\n```python\nx = 1\n```")
    with pytest.raises(ValueError, match="never closed"):
        parse_blocks("```python\nx = 1\n")


def test_every_block_is_run_checked_or_marked():
    """Each python, shell and toml block is collected below or carries a valid marker."""
    langs = {b.lang for b in ALL_BLOCKS}
    unknown = langs - {"python", *SHELL, "toml", "", "text"} - {
        lang for lang in langs if lang.startswith("{")}  # MyST directives
    assert not unknown, f"code blocks in a language the docs tests do not handle: {unknown}"
    assert _runnable(("python",)) and _runnable(SHELL) and _runnable(("toml",))
    for b in ALL_BLOCKS:
        if b.marker == "tested-by":
            path, _, test = b.marker_arg.partition("::")
            assert (ROOT / path).is_file(), f"{b.id}: tested-by {path} does not exist"
            if test:
                assert re.search(rf"^def {re.escape(test)}\(", (ROOT / path).read_text(),
                                 re.M), f"{b.id}: {path} has no test {test}"


# --------------------------------------------------------------------------- python blocks
PYTHON_PAGES = sorted({b.page for b in _runnable(("python",))})


@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for block in _runnable(("python",)):
        if block.page != page:
            continue
        code = compile(block.code, f"{block.id}", "exec")
        with contextlib.redirect_stdout(open(os.devnull, "w")):  # noqa: SIM115
            try:
                exec(code, namespace)  # noqa: S102 - the docs' own snippets
            except Exception as exc:
                raise AssertionError(f"the python block at {block.id} fails: "
                                     f"{type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- shell blocks
def _shell_script(block: Block) -> str:
    if block.lang == "console":
        return "\n".join(ln[2:] for ln in block.code.splitlines() if ln.startswith("$ "))
    return block.code


@pytest.mark.parametrize("block", _runnable(SHELL), ids=lambda b: b.id)
def test_shell_blocks_run(block):
    env = {**os.environ, "MPLBACKEND": "Agg",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", _shell_script(block)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (f"the shell block at {block.id} failed "
                                  f"({proc.returncode}): {proc.stderr[-2000:]}")


# --------------------------------------------------------------------------- toml blocks
@pytest.mark.parametrize("block", _runnable(("toml",)), ids=lambda b: b.id)
def test_toml_blocks_are_valid_configs(block, monkeypatch):
    """Every key a config example names is accepted (fragments get one algorithm)."""
    from moebench.sweep.config import tomllib, validate_config

    raw = tomllib.loads(block.code)
    source = raw.get("data", {}).get("source")
    if source is not None and not (ROOT / source["csv"]).is_file():
        pytest.skip(f"{block.id} reads {source['csv']}, which is not here")
    raw.setdefault("algorithm", [{"name": "joint_em"}])
    monkeypatch.chdir(ROOT)  # a CSV source is read from the current directory
    config = validate_config(raw, name="docs_example", source=block.id)
    assert config.cells()


# --------------------------------------------------------------------------- images, links
IMAGE = re.compile(r"!\[[^\]]*\]\((?P<path>[^)\s]+)")
DIRECTIVE_IMAGE = re.compile(r"^```\{(?:image|figure)\}\s+(?P<path>\S+)", re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<path>[^)\s]+)\)")


def _images(page: Path) -> list[str]:
    text = page.read_text()
    return [m["path"] for m in IMAGE.finditer(text)] + [
        m["path"] for m in DIRECTIVE_IMAGE.finditer(text)]


def test_every_figure_exists():
    shown = 0
    for page in PAGES:
        for path in _images(page):
            target = (page.parent / path).resolve()
            assert target.is_file(), f"{_rel(page)} shows {path}, which does not exist"
            assert target.is_relative_to(ROOT / "results") or target.is_relative_to(DOCS), \
                f"{_rel(page)} shows {path}, outside results/ and docs/"
            shown += 1
    assert shown >= 8


def _slugs(page: Path) -> set[str]:
    """GitHub-style heading anchors of a page (MyST's default slugs, myst_heading_anchors)."""
    slugs = set()
    for block_free in re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S).split("\n"):
        m = re.match(r"#{1,6} (.*)", block_free)
        if m:
            slugs.add(re.sub(r"[^\w\- ]", "", m[1].strip().lower()).replace(" ", "-"))
    return slugs


def test_every_relative_link_exists():
    """Every relative link points to an existing file, and a #anchor to one of its headings."""
    checked = 0
    for page in PAGES:
        for m in LINK.finditer(page.read_text()):
            path, _, anchor = m["path"].partition("#")
            if re.match(r"[a-z]+:", path):
                continue
            target = page.parent / path if path else page
            assert target.exists(), f"{_rel(page)} links to missing {path}"
            if anchor and target.suffix == ".md":
                assert anchor in _slugs(target), \
                    f"{_rel(page)} links to #{anchor}, not a heading of {_rel(target)}"
                checked += 1
    assert checked >= 5


# --------------------------------------------------------------------------- generated parts
def _ext():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        return importlib.import_module("moebench_docs")
    finally:
        sys.path.remove(str(DOCS / "_ext"))


def test_config_reference_is_rendered_from_the_key_declarations():
    """The page holds the directive, and the directive renders every declared key of every
    table (the declaration the validator checks through: tests/test_config_keys.py) with
    its default, the constraint's words and its doc line."""
    from moebench.sweep.config_keys import SYNTHETIC, TABLES, reference_markdown

    assert "```{config-reference}" in (DOCS / "sweeps.md").read_text()
    lines = reference_markdown()
    assert _ext().ConfigReference.generate(None) == lines  # the directive renders just this
    for table in TABLES:
        start = lines.index(f"**{table.title}**")
        rows = lines[start + 4:start + 4 + len(table.keys)]
        assert [r.split(" | ")[0] for r in rows] == [f"| `{k.name}`" for k in table.keys]
        assert all(k.doc and k.doc in r for k, r in zip(table.keys, rows, strict=True))
    sigma = next(r for r in lines if r.startswith("| `sigma` |"))
    assert sigma == ("| `sigma` | `0.1` | a finite real number > 0, or a list of them | "
                     f"{SYNTHETIC['sigma'].doc} |")


def test_status_table_covers_every_status():
    from moebench.sweep.columns import STATUSES

    assert set(_ext().STATUS_DOCS) == set(STATUSES)
    assert "```{run-statuses}" in (DOCS / "results_schema.md").read_text()


def test_every_algorithm_has_its_options_table():
    from moebench.registry import available_algorithms

    page = (DOCS / "algorithms.md").read_text()
    shown = set(re.findall(r"^```\{algorithm-options\} (\w+)", page, re.M))
    assert shown == set(available_algorithms(references=True, oracles=True))
    rows = _ext().algorithm_rows("joint_em")["rows"]
    assert ["`n_init`", "`2`", "an integer >= 1"] == rows[[r[0] for r in rows].index(
        "`n_init`")][:3]


def test_public_api_rule():
    ext = _ext()
    with_all = types.ModuleType("m_all")
    with_all.__all__ = ["f", "C"]
    exec("def f(): pass\nclass C: pass\ndef g(): pass\nX = 1", with_all.__dict__)  # noqa: S102
    assert ext.public_names(with_all) == ["f", "C"]
    without = types.ModuleType("m_plain")
    exec("from os.path import join\ndef f(): pass\ndef _h(): pass\nclass C: pass",  # noqa: S102
         without.__dict__)
    assert sorted(ext.public_names(without)) == ["C", "f"]  # join is imported, _h private
    assert not ext.is_public_module("moebench.baselines._spectral")
    for script in ext.SCRIPT_MODULES:  # left out of the API: they must define nothing
        tree = ast.parse((ROOT / (script.replace(".", "/") + ".py")).read_text())
        assert not [n for n in tree.body if isinstance(
            n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))], script
    api = ext.public_api()
    assert {"moebench", "moebench.generator", "moebench.baselines.joint_em",
            "moebench.sweep.config", "moebench.tensor.estimator"} <= set(api)
    assert ("make_moe", "moebench.generator.make_moe") in api["moebench"]
    assert ("JointEM", "moebench.baselines.joint_em.JointEM") in \
        api["moebench.baselines.joint_em"]
    targets = {t for entries in api.values() for _, t in entries}
    assert all(t.split(".")[-1][0] != "_" for t in targets)


def test_the_build_check_names_an_undocumented_public_object(monkeypatch):
    """The docs build warns (an error under -W) for a public object missing from the API."""
    ext = _ext()
    warned: list[str] = []
    monkeypatch.setattr(ext, "logger", types.SimpleNamespace(
        warning=lambda msg, **kw: warned.append(msg)))
    monkeypatch.setattr(ext, "public_api", lambda: {
        "moebench": [("make_moe", "moebench.generator.make_moe"),
                     ("MoEModel", "moebench.model.MoEModel")]})
    domain = types.SimpleNamespace(objects={"moebench.model.MoEModel": None})
    env = types.SimpleNamespace(get_domain=lambda name: domain)
    ext.check_api_documented(None, env)
    assert len(warned) == 1 and "moebench.make_moe" in warned[0]


# --------------------------------------------------------------------------- CLI help
def test_every_verb_help_names_an_existing_docs_page():
    from moebench.cli import DOCS_PAGES, build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "verb").choices
    assert set(DOCS_PAGES) == set(verbs)
    for name, sub in [("moebench", parser), *verbs.items()]:
        text = sub.format_help()
        pages = re.findall(r"docs/[\w/]+\.md", text)
        assert pages, f"{name} --help names no docs page"
        for page in pages:
            assert (ROOT / page).is_file(), f"{name} --help names {page}, which does not exist"


# --------------------------------------------------------------------------- README, results
def test_readme_is_the_front_door():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    first = parse_blocks(text, "README.md")[0]
    assert first.code == (
        'python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && .venv/bin/pip install '
        '-e ".[dev]" && .venv/bin/moebench run quickstart\n.venv/bin/python -m pytest -q\n')
    for page in ("docs/index.md", "docs/findings/paper.md", "docs/adding_a_baseline.md"):
        assert f"]({page}" in text


def test_regeneration_table_matches_the_committed_results():
    """Contributing names every committed results folder's config, and only shipped ones."""
    from moebench.sweep.config import named_configs

    page = (DOCS / "contributing.md").read_text()
    table = re.findall(r"^\| `(\w+)` \| \d+ \| `results/(\w+)/` \|", page, re.M)
    assert table and all(c == r for c, r in table)
    named = {c for c, _ in table}
    assert named <= set(named_configs())
    try:
        tracked = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True,
                                 text=True, check=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        pytest.skip("git is not available to list the committed results")
    committed = {Path(p).parts[1] for p in tracked if p.endswith("summary.parquet")}
    assert committed & set(named_configs()) <= named, \
        f"committed results without a row in docs/contributing.md: " \
        f"{sorted(committed & set(named_configs()) - named)}"
