"""Empty temp files made ahead of need while uploads overlap, and none on disk when idle.

Creating a file is the dearest system call of an upload on some file systems: 200-600 µs
of CPU on the sandboxed ext4 of the bench machine, on the event loop, once per upload.
While more than one upload is in flight, a background thread keeps up to `size` empty temp
files ready, so that `take` hands one over without a system call. When the last upload in
flight leaves, the unused ones are removed before its response goes out: an idle service
holds no temp file, and a refused upload leaves nothing behind. A crash leaves them to the
start-up sweep (they carry the pid, like every temp file).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from io import FileIO
from pathlib import Path

from app.storage.atomic import create_temp, unlink_quietly

logger = logging.getLogger("app.storage")


class TempFileStock:
    """Temp files in `directory` for uploads; `enter`/`take`/`leave` run on the event loop."""

    def __init__(self, directory: Path, size: int) -> None:
        self.directory = directory
        self.size = size
        self._files: deque[tuple[Path, FileIO]] = deque()
        self._in_flight = 0
        self._making = threading.Lock()  # held by the thread while it makes (and stocks) a file
        self._wanted = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def enter(self) -> None:
        """An upload begins."""
        self._in_flight += 1
        self._want_more()

    def take(self) -> tuple[Path, FileIO]:
        """A new, empty temp file, open for reading and writing; the caller owns it."""
        try:
            item = self._files.popleft()
        except IndexError:
            return create_temp(self.directory)
        self._want_more()
        return item

    def leave(self) -> None:
        """An upload ends; the last one out removes the unused files."""
        self._in_flight -= 1
        if self._in_flight == 0:
            self._drain()

    def close(self) -> None:
        """Stop the thread and remove the unused files."""
        self._closed = True
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._drain()

    @property
    def stocked(self) -> int:
        """How many files are ready now."""
        return len(self._files)

    def _want_more(self) -> None:
        if self._in_flight > 1 and self.size > 0 and len(self._files) < self.size and not self._closed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="temp-files", daemon=True)
                self._thread.start()
            self._wanted.set()

    def _drain(self) -> None:
        with self._making:  # a file being made now is stocked first, then removed with the rest
            while self._files:
                path, file = self._files.popleft()
                file.close()
                unlink_quietly(path)

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._closed:
                return
            while len(self._files) < self.size:
                with self._making:
                    if self._in_flight < 1 or self._closed:
                        break
                    try:
                        self._files.append(create_temp(self.directory))
                    except OSError as exc:  # a full disk: uploads make their own files (and fail there)
                        logger.warning("could not make a temp file in %s: %s", self.directory, exc)
                        break
