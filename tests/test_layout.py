"""The source stays readable (issue 16): no module longer than about 600 lines, no function
longer than about 80."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "napari_nanoscopy"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 85  # "about 80": a signature or docstring line more is no reason to split


def test_no_module_or_function_is_too_long():
    too_long = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(SRC).as_posix()
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}: {node.name}() is {length} lines")
    assert too_long == []
