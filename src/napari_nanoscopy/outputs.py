"""Outputs written all or none: staged under hidden temporary names beside their targets, then
published together (or taken back), never replacing what another run created meanwhile."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import NanoscopyError


class OutputAppeared(NanoscopyError):
    """An output path that was free when a run started was taken (by another run) before it published."""


class StagedOutputs:
    """The outputs of one run, written under temporary names and published all together or not at all.

    :meth:`stage` gives the temporary path to write an output to (a file or a folder): hidden,
    beside the output, ending in the output's name so that its suffix still names the format.
    :meth:`publish` moves every staged output into place; when one cannot be placed, those already
    placed are taken back and anything ``overwrite`` replaced is put back. Without ``overwrite``
    nothing is ever replaced: an output path that something else (another run) created while this
    run was writing is refused. Used as a context manager, the outputs are published when the block
    ends normally and the temporaries removed when it ends by an exception (Ctrl-C included).
    """

    def __init__(self, overwrite: bool = False):
        self.overwrite = overwrite
        self._staged: list[tuple[Path, Path]] = []  # (temporary, output)
        self.published: list[Path] = []

    def stage(self, path) -> Path:
        """The temporary path to write the output ``path`` to."""
        output = Path(path)
        if not output.parent.is_dir():
            raise NanoscopyError(
                f"Cannot write {output}: the folder {output.parent} does not exist; create it first."
            )
        temporary = output.with_name(f".{secrets.token_hex(6)}.partial.{output.name}")
        self._staged.append((temporary, output))
        return temporary

    def publish(self) -> list[Path]:
        """Move every staged output into place, all or none; returns the outputs' paths."""
        placed: list[tuple[Path, Path | None]] = []  # (output, hidden copy of what it replaced)
        with _signals_held() as interrupted:  # a Ctrl-C or SIGTERM must not leave some outputs placed
            try:
                for temporary, output in self._staged:
                    placed.append((output, self._place(temporary, output)))
                if interrupted:
                    raise KeyboardInterrupt  # while placing: an interrupted run keeps no output
            except BaseException:
                for output, replaced in reversed(placed):
                    _remove(output)
                    if replaced is not None:
                        os.rename(replaced, output)
                self._discard()
                raise
            for _, replaced in placed:
                if replaced is not None:
                    _remove(replaced)
        self._staged.clear()
        self.published = [output for output, _ in placed]
        return self.published

    def discard(self) -> None:
        """Remove every temporary; nothing is published."""
        with _signals_held():
            self._discard()

    def _discard(self) -> None:
        for temporary, _ in self._staged:
            _remove(temporary)
        self._staged.clear()

    def _place(self, temporary: Path, output: Path) -> Path | None:
        replaced = None
        if self.overwrite and os.path.lexists(output):
            if output.is_dir() != temporary.is_dir():
                kinds = ("folder", "file") if output.is_dir() else ("file", "folder")
                raise NanoscopyError(
                    f"Cannot replace {output}: it is a {kinds[0]} and the output is a {kinds[1]}; "
                    "remove it or choose another path."
                )
            replaced = output.with_name(f".{secrets.token_hex(6)}.replaced.{output.name}")
            os.rename(output, replaced)
        try:
            _move_exclusively(temporary, output)
        except FileExistsError:
            if replaced is not None:
                os.rename(replaced, output)
            raise OutputAppeared(
                f"{output} appeared while this run was writing it (another run?), so no output of "
                "this run was kept; choose another path or pass --overwrite to replace it."
            ) from None
        return replaced

    def __enter__(self) -> "StagedOutputs":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is None:
            self.publish()
        else:
            self.discard()


def _move_exclusively(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, raising FileExistsError rather than replacing anything there."""
    if not source.is_dir():
        try:
            os.link(source, target)  # fails when target exists, whoever created it and when
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links (FAT, some network shares)
            pass
        else:
            os.unlink(source)
            return
    if os.path.lexists(target):
        raise FileExistsError(target)
    try:
        os.rename(source, target)  # POSIX: never onto a file or a non-empty folder
    except OSError:
        if os.path.lexists(target):
            raise FileExistsError(target) from None
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def _signals_held() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM (main thread only) while the block runs; yields the list of those received.

    They are delivered to the handlers in place before when the block ends normally; when it ends
    by an exception, that exception stands for them.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(number) is not signal.SIG_IGN:
            previous[number] = signal.signal(number, lambda number, frame: received.append(number))
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
    for number in received:
        signal.raise_signal(number)


@contextmanager
def atomic_output(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` and move it onto ``path`` on success.

    On any exception the temporary file is deleted and the exception re-raised, so a
    partial file never appears at ``path`` (and an existing file there stays untouched).
    The temporary name is hidden (leading dot) and ends in ``path``'s name.
    """
    with StagedOutputs(overwrite=True) as outputs:
        yield outputs.stage(path)
