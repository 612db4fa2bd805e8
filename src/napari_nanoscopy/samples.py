"""Sample images shipped inside the package (simulated with pySTED; recipes in docs/models.md)."""

from __future__ import annotations

from pathlib import Path

from .errors import NanoscopyError

SAMPLE_DIR = Path(__file__).parent / "sample_data"


def list_samples() -> list[str]:
    """Names (file stems) of the bundled sample images."""
    return sorted(p.name[: -len(".tif")] for p in SAMPLE_DIR.glob("*.tif"))


def sample_path(name: str) -> Path:
    """Path of a bundled sample image by name (with or without the .tif suffix)."""
    stem = name[: -len(".tif")] if name.endswith(".tif") else name
    path = SAMPLE_DIR / f"{stem}.tif"
    if not path.is_file():
        raise NanoscopyError(
            f"There is no bundled sample called {name!r}. Available samples: {', '.join(list_samples())}."
        )
    return path
