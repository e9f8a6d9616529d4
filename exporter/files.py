"""Reading local files without surprises: regular files only, with a size bound.

``/dev/zero`` as a certificate would be read until memory runs out, and a FIFO would hang
``--config.check`` forever: both are refused before a byte is read.
"""

from __future__ import annotations

import os
import stat

MAX_FILE_BYTES = 8 * 1024 * 1024  # a configuration, catalog, certificate or secret is far smaller


def read_bounded(path: str | os.PathLike[str], limit: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes; ``OSError`` when unreadable, ``ValueError`` when not a regular file or too large."""
    # O_NONBLOCK: opening a FIFO with no writer must not block; it is refused below anyway.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ValueError("is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("is not a regular file (a device, FIFO or socket)")
        if info.st_size > limit:
            raise ValueError(f"is larger than {limit // 1024} KiB")
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:  # grew while being read
                raise ValueError(f"is larger than {limit // 1024} KiB")
            chunks.append(chunk)
    finally:
        os.close(fd)
