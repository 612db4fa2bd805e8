"""Models opened or trained in this napari session, shared by every Restore widget."""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal


class ModelRegistry:
    """Model packages beyond the bundled ones: ``added`` fires with the path of each new one."""

    added = Signal(str)

    def __init__(self) -> None:
        self._models: dict[str, object] = {}  # path -> ModelCard

    def add(self, path, card) -> str:
        key = str(Path(path).expanduser().resolve())
        is_new = key not in self._models
        self._models[key] = card
        if is_new:
            self.added.emit(key)
        return key

    def items(self) -> list[tuple[str, object]]:
        return list(self._models.items())

    def __contains__(self, path) -> bool:
        return str(Path(path).expanduser().resolve()) in self._models


REGISTRY = ModelRegistry()
