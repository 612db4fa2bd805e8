"""Issue 16's limits on the source, so that a new maintainer can read each piece at once:
modules of at most about 600 lines, functions of at most about 80, each module described in
docs/architecture.md."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "napari_nanoscopy"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80  # signature, docstring and body


def _sources() -> list[tuple[str, str]]:
    return [(path.relative_to(SRC).as_posix(), path.read_text(encoding="utf-8")) for path in sorted(SRC.rglob("*.py"))]


def test_no_module_is_longer_than_the_limit():
    too_long = {name: text.count("\n") for name, text in _sources() if text.count("\n") > MAX_MODULE_LINES}
    assert not too_long, f"these modules are over {MAX_MODULE_LINES} lines: {too_long}; split each by job"


def test_no_function_is_longer_than_the_limit():
    too_long = {}
    for name, text in _sources():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long[f"{name}:{node.name}"] = lines
    assert not too_long, f"these functions are over {MAX_FUNCTION_LINES} lines: {too_long}; split each into named steps"


def test_every_module_has_its_paragraph_in_the_architecture_doc():
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules = sorted({path.stem for path in SRC.rglob("*.py") if path.stem != "__init__"})
    missing = [name for name in modules if f"`{name}`" not in doc]
    assert not missing, f"docs/architecture.md does not say what {missing} own; add a sentence for each"
