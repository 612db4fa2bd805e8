"""Sample images shipped with the package (simulated with pySTED; recipe: recipes/make_samples.py)."""

from __future__ import annotations

from pathlib import Path

from .errors import NanoscopyError


def _sample_dir() -> Path:
    # An installed wheel carries the samples as napari_nanoscopy/sample_data (setup.py); a source
    # checkout (editable install) keeps them in the repository's top-level sample_data/.
    installed = Path(__file__).parent / "sample_data"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / "sample_data"


SAMPLE_DIR = _sample_dir()


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
