"""Reading one stamp's Health resource provider (``Microsoft.InfrastructureInsights.Admin``).

The admin client reads a stamp's alerts list in the same read as its update location, with
the same session and token (``admin.AdminClient``); this module says where the list is and
what it means. The list holds closed alerts too, and real stamps have never been seen to
honour a filter on it, so the active ones are counted here: an alert whose state is
``Active``, or, when a stamp sends no state, one with no closing time. Only this one list is
read: the region health's own ``alertSummary`` counts the same alerts.

Everything is bounded at the border: at most MAX_FAULT_TYPES fault types per stamp (the rest
summed into ``other``), fault types and titles cleaned and cut to a length, unknown
severities counted apart, never as critical or warning.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from .border import clean_text

API_VERSION = "2016-05-01"
SEVERITIES = ("critical", "warning")
MAX_FAULT_TYPES = 50  # label values per stamp of azurestack_stamp_alert_active; the rest are "other"
OTHER = "other"
UNKNOWN_FAULT = "unknown"  # an active alert that names no fault type
MAX_FAULT_TYPE = 128
MAX_TITLE = 160
MAX_TITLES = 5  # active alerts named on the status page and in JSON, critical first
MAX_ALERTS = 10_000  # entries of one stamp's alerts list, closed ones included, all pages together
# JSON objects in one page of alerts: a real alert is about 20 (its description and remediation
# are lists of text runs), so this bounds a page of 10,000 alerts, and what 8 MiB of ``{}`` would become.
MAX_ALERT_OBJECTS = 200_000
CERTIFICATE_PREFIX = "certificateexpiration"  # fault types of expiring certificates, internal and external
# States an alert can be in (AlertState in the API): any other state is read by its closing time.
ACTIVE, CLOSED = "active", "closed"


@dataclass(frozen=True, slots=True)
class Health:
    """What the Health provider said about one stamp, or why it could not be read."""

    critical: int = 0
    warning: int = 0
    # (fault type, severity, active alerts): at most MAX_FAULT_TYPES fault types, then ("other", severity, n)
    by_fault: tuple[tuple[str, str, int], ...] = ()
    certificates: int = 0  # active alerts of an expiring certificate
    other_severity: int = 0  # active alerts of a severity that is neither critical nor warning
    titles: tuple[tuple[str, str], ...] = ()  # (severity, title) of the first MAX_TITLES active alerts
    listed: int = 0  # alerts listed, closed ones included
    error: str | None = None  # why the read failed: then nothing above is known
    reason: str | None = None  # the failure's reason label (timeout, auth, http, parse, size, ...)

    @property
    def known(self) -> bool:
        return self.error is None


def failed(reason: str, message: str) -> Health:
    return Health(error=f"{reason}: {message}", reason=reason)


def alerts_url(endpoint: str, subscription: str, location: str) -> str:
    """The stamp's alerts list. Discovered names come from the stamp: quoted, each stays one path segment."""
    sub, loc = quote(subscription, safe=""), quote(location, safe="")
    return (
        f"{endpoint}/subscriptions/{sub}/resourceGroups/System.{loc}"
        f"/providers/Microsoft.InfrastructureInsights.Admin/regionHealths/{loc}/alerts"
    )


def _active(props: dict[str, object]) -> bool:
    state = props.get("state")
    state = state.strip().lower() if isinstance(state, str) else ""
    if state in (ACTIVE, CLOSED):
        return state == ACTIVE
    # Open alerts are recorded nowhere; Microsoft's specification examples send them Active with an
    # empty closedTimestamp. Without a state, one that was closed says when.
    return not clean_text(props.get("closedTimestamp"), 64)


def health_from(items: Iterable[object]) -> Health:
    """Count the active alerts of an alerts list, as the 2017 and 2020 recordings send it."""
    counts: Counter[tuple[str, str]] = Counter()
    severities: Counter[str] = Counter()
    certificates = other = listed = 0
    titles: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        props = item.get("properties")
        if not isinstance(props, dict):
            continue
        listed += 1
        # A page repeated by a server counts once: the alert's id names it.
        ident = clean_text(props.get("alertId"), 64) or clean_text(item.get("name"), 200)
        if ident is not None:
            if ident in seen:
                continue
            seen.add(ident)
        if not _active(props):
            continue
        raw_severity = props.get("severity")
        severity = raw_severity.strip().lower() if isinstance(raw_severity, str) else ""
        if severity not in SEVERITIES:
            other += 1
            continue
        fault = clean_text(props.get("faultTypeId"), MAX_FAULT_TYPE) or UNKNOWN_FAULT
        severities[severity] += 1
        counts[fault, severity] += 1
        if fault.lower().startswith(CERTIFICATE_PREFIX):
            certificates += 1
        title = clean_text(props.get("title"), MAX_TITLE) or fault
        titles.append((severity, title))
    return Health(
        critical=severities["critical"],
        warning=severities["warning"],
        by_fault=_bounded(counts),
        certificates=certificates,
        other_severity=other,
        titles=tuple(sorted(titles, key=lambda t: SEVERITIES.index(t[0]))[:MAX_TITLES]),
        listed=listed,
    )


def _bounded(counts: Counter[tuple[str, str]]) -> tuple[tuple[str, str, int], ...]:
    """The MAX_FAULT_TYPES fault types with the most critical, then most active alerts, by name;
    the others summed into ``other`` per severity, so the totals stay whole."""
    per_fault: dict[str, tuple[int, int]] = {}
    for (fault, severity), n in counts.items():
        critical, total = per_fault.get(fault, (0, 0))
        per_fault[fault] = (critical + (n if severity == "critical" else 0), total + n)
    # A fault type a stamp calls "other" is summed into other: one series per label set.
    ranked = sorted((f for f in per_fault if f != OTHER), key=lambda f: (-per_fault[f][0], -per_fault[f][1], f))
    kept = set(ranked[:MAX_FAULT_TYPES])
    rows: list[tuple[str, str, int]] = []
    rest: Counter[str] = Counter()
    for (fault, severity), n in sorted(counts.items()):
        if fault in kept:
            rows.append((fault, severity, n))
        else:
            rest[severity] += n
    rows.extend((OTHER, severity, rest[severity]) for severity in SEVERITIES if rest[severity])
    return tuple(rows)


def summary(health: Health | None) -> str:
    """In words, for the status page and ``check``."""
    if health is None:
        return "not read"
    if not health.known:
        return f"not read ({health.error})"
    if not health.critical and not health.warning:
        return "no active alerts"
    parts = []
    if health.critical:
        parts.append(f"{health.critical} critical")
    if health.warning:
        parts.append(f"{health.warning} warning")
    return " and ".join(parts) + (" alert" if health.critical + health.warning == 1 else " alerts")
