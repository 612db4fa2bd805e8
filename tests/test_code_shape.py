"""Issue 16's size limits on the source: functions of at most about 80 lines, so that each one
does one named step that a new maintainer can read at once."""

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "napari_nanoscopy"
MAX_FUNCTION_LINES = 80  # signature, docstring and body

# Functions still longer, in code that other refactors of issue 16 own; remove an entry when its
# function is split. Nothing may be added here.
NOT_YET_SPLIT = {
}


def _long_functions() -> dict[str, int]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        module = path.relative_to(SRC).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found[f"{module}:{node.name}"] = lines
    return found


def test_no_function_is_longer_than_the_limit():
    too_long = {name: lines for name, lines in _long_functions().items() if name not in NOT_YET_SPLIT}
    assert not too_long, (
        f"these functions are over {MAX_FUNCTION_LINES} lines: {too_long}; split each into named steps"
    )


def test_every_module_has_its_paragraph_in_the_architecture_doc():
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules = sorted({path.stem for path in SRC.rglob("*.py") if path.stem != "__init__"})
    missing = [name for name in modules if f"`{name}`" not in doc]
    assert not missing, f"docs/architecture.md does not say what {missing} own; add a sentence for each"
