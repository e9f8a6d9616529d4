"""The border: where values from the network or a file become typed, bounded values.

Everything a stamp, a catalog source or a configuration file says passes through here
before anything downstream sees it. Text is made printable and encodable (a lone
surrogate is legal in JSON but cannot be written as UTF-8; a control character can forge a
terminal table) and cut to a length; numbers are finite and within plausible bounds;
times are not in the future beyond a small clock skew. After this, nothing downstream can
raise on a value, and a value that cannot be made plausible is absent, never guessed.
"""

from __future__ import annotations

import math
import sys
import unicodedata

REPLACEMENT = "\ufffd"
# Clocks of stamps and of the exporter's host differ a little; beyond this a time is refused.
CLOCK_SKEW = 3600.0
# An update run is measured in hours (the 1802 update took 14 h 43 m); a year is implausible.
MAX_RUN_SECONDS = 366 * 86400.0
MAX_SHARED = 64  # texts up to this long are kept once however often they come (``shared``)


def _printable(char: str) -> str:
    """One character as it may be shown: whitespace becomes a space, other invisibles U+FFFD."""
    if char.isspace():
        return " "
    category = unicodedata.category(char)
    if category[0] == "C":  # Cc control, Cf format (bidi overrides), Cs surrogate, Co private, Cn unassigned
        return REPLACEMENT
    return char


def clean_text(value: object, limit: int = 200) -> str | None:
    """Printable, encodable text of at most ``limit`` characters, whitespace collapsed; None when empty.

    Anything that is not a string is None: a number where text belongs says nothing usable.
    """
    if not isinstance(value, str):
        return None
    if not (value.isascii() and value.isprintable()):
        value = "".join(_printable(c) for c in value)
        value = " ".join(value.split())
    else:
        value = value.strip()
    if len(value) > limit:
        value = value[: max(0, limit - 1)] + "\u2026"
    return value or None


def shared(value: str | None) -> str | None:
    """One copy of a short text however many stamps and reads keep it (versions, states, names:
    a fleet lists the same few). Only for values that are kept: an interned text stays in the
    interpreter's table while it lives, and the table never shrinks."""
    if type(value) is str and len(value) <= MAX_SHARED:
        return sys.intern(value)
    return value


def is_clean(value: str) -> bool:
    """True when ``clean_text`` would leave the text as it is (used to refuse, not repair, config input)."""
    return clean_text(value, len(value) + 1) == value


def finite(value: float | None, low: float, high: float) -> float | None:
    """``value`` when it is a finite number within [low, high], else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(number) or not low <= number <= high:
        return None
    return number


def not_future(timestamp: float | None, now: float, skew: float = CLOCK_SKEW) -> float | None:
    """A time that has happened (allowing for clock skew), else None."""
    if timestamp is None or timestamp > now + skew:
        return None
    return timestamp


def escape_terminal(text: str) -> str:
    """Text safe to print to a terminal: control and format characters shown as escapes.

    ``check`` prints names and messages from stamps and files; an escape sequence among them
    could move the cursor, recolour or rewrite the table an operator reads.
    """
    if text.isascii() and text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable() or char == " ":
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)
