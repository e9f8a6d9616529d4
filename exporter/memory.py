"""Giving freed memory back to the system.

Memory Python frees for objects above 512 bytes goes back to the C allocator, and glibc keeps
it in the arena of the thread that used it: after a refresh round on 32 reading threads, the
exporter's RSS stays tens of MiB above what it holds. ``malloc_trim`` hands the free pages
back. Where the C library has no such call (musl, other systems) nothing happens.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("exporter")

_trim: object = None


def _malloc_trim() -> object:
    global _trim
    if _trim is None:
        try:
            _trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = False
    return _trim


def release() -> bool:
    """Return free memory to the system; False where the C library cannot."""
    trim = _malloc_trim()
    if not trim:
        return False
    try:
        trim(0)  # type: ignore[operator]
    except Exception:  # pragma: no cover - a failing trim costs memory, never the service
        log.debug("malloc_trim failed", exc_info=True)
        return False
    return True
