"""The status page at ``/``: the fleet's compliance at a glance, without Grafana.

Server-rendered from the same report as every other view; no JavaScript and no external
asset (its stylesheet is served by the exporter at ``/static/status.css``), so it works in an
air-gapped network under a strict Content-Security-Policy.
"""

from __future__ import annotations

import datetime as dt
from html import escape

from . import __version__
from .catalog import dated_text
from .health import summary as health_summary
from .report import (
    Report,
    StampReport,
    catalog_warnings,
    forecast_note,
    freshness_text,
    runs_text,
    stamp_flags,
    support_end_text,
)

CSS = """\
:root { --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 0;
       background: #f6f8fa; }
header, main, footer { max-width: 1280px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 20px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
.meta, footer { color: var(--muted); }
a { color: #0969da; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 16px 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 150px; }
.card .n { font-size: 28px; font-weight: 600; display: block; }
.card.bad .n { color: var(--bad); } .card.warn .n { color: var(--warn); } .card.ok .n { color: var(--ok); }
table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #eaeef2; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
         white-space: nowrap; color: #fff; }
.badge.in_support { background: var(--ok); } .badge.ending_soon { background: var(--warn); }
.badge.out_of_support { background: var(--bad); } .badge.unknown { background: var(--muted); }
.down { color: var(--bad); } .ok { color: var(--ok); }
ul.small { margin: 2px 0 0; padding-left: 16px; }
.small { font-size: 12px; color: var(--muted); } .flag { color: var(--warn); }
.runbook { font-size: 12px; }
.alert { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
#reload { white-space: pre-line; }
.note { border: 1px solid var(--muted); border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
details summary { cursor: pointer; }
code { font-size: 12px; }
footer { padding: 16px 24px 32px; }
"""

_BADGE = {
    "in_support": "In support",
    "ending_soon": "Ending soon",
    "out_of_support": "Out of support",
    "unknown": "Unknown",
}
_ORDER = {"out_of_support": 0, "unknown": 1, "ending_soon": 2, "in_support": 3}
# The runbooks the alerting rules link to: the same page, one anchor per alert.
RUNBOOKS = "https://github.com/azurestack-exporter/azurestack-exporter/blob/main/docs/runbooks.md"
_VERDICT_RUNBOOK = {"out_of_support": "azurestackstampoutofsupport", "ending_soon": "azurestackstampsupportendingsoon"}


def _runbook(anchor: str, text: str) -> str:
    return f'<a class="runbook" href="{RUNBOOKS}#{anchor}" title="runbook">{text}</a>'


def _sort_key(stamp: StampReport) -> tuple[int, int, str]:
    """Worst verdict first; within one, stamps missing their latest hotfix first."""
    ev = stamp.evaluation
    return (_ORDER[stamp.verdict], 0 if ev is not None and ev.latest_hotfix_installed is False else 1, stamp.name)


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _row(stamp: StampReport, now: float) -> str:
    status, ev, obs = stamp.status, stamp.evaluation, stamp.status.observation
    verdict = stamp.verdict
    cells = [f'<td><strong>{escape(stamp.name)}</strong><br><span class="small">{escape(status.source)}</span></td>']
    version = f"<code>{escape(str(obs.version))}</code>" if obs else "–"
    if obs and obs.oem_version:
        version += f'<br><span class="small">OEM {escape(obs.oem_version)}'
        if stamp.oem is not None:
            version += f", {stamp.oem.versions_behind} behind" + ("" if stamp.oem.in_support else " (out of N-2)")
        version += "</span>"
    cells.append(f"<td>{version}</td>")
    cells.append(f"<td>{escape(ev.update_version)}</td>" if ev else "<td>–</td>")
    cells.append(f'<td class="num">{ev.versions_behind}</td>' if ev else '<td class="num">–</td>')
    badge = f'<span class="badge {verdict}">{_BADGE[verdict]}</span>'
    if verdict in _VERDICT_RUNBOOK:
        badge += " " + _runbook(_VERDICT_RUNBOOK[verdict], "runbook")
    cells.append(f"<td>{badge}</td>")
    if ev is None or ev.latest_hotfix_installed is None:
        hotfix = "–" if ev is None else "none known"
    elif ev.latest_hotfix_installed:
        hotfix = f"installed (<code>{escape(str(ev.latest_hotfix))}</code>)"
    else:
        hotfix = f'<span class="down">missing <code>{escape(str(ev.latest_hotfix))}</code></span>'
        if ev.hotfix_overdue:
            hotfix += '<br><span class="down">overdue</span> ' + _runbook("azurestackstamphotfixoverdue", "runbook")
    cells.append(f"<td>{hotfix}</td>")
    end = support_end_text(stamp)
    title = ' title="forecast"' if stamp.support_expected_end is not None else ""
    cells.append(f"<td{title}>{escape(end)}</td>")
    state = escape(obs.update_state) if obs and obs.update_state else "–"
    summary = runs_text(stamp)
    if obs and obs.update_state in ("UpdateFailed", "PreparationFailed", "NeedsAttention"):
        state = f'<span class="down">{state}</span> ' + _runbook("azurestackstampupdatefailed", "runbook")
    if summary:
        state += f'<br><span class="small">{escape(summary)}</span>'
        if stamp.runs and stamp.runs.last and stamp.runs.last.error:
            state += f'<br><span class="down small">{escape(stamp.runs.last.error)}</span>'
    cells.append(f"<td>{state}</td>")
    collected = '<span class="down">never</span>' if obs is None else _age(now - obs.collected_at)
    if not status.up:
        collected += f'<br><span class="down">{escape(stamp.problem or "down")}</span> '
        collected += _runbook("azurestackstampcollectionfailing", "runbook")
    elif stamp.problem:
        collected += f'<br><span class="down">{escape(stamp.problem)}</span>'
    for flag in stamp_flags(stamp):  # what this stamp alone claims, not believed for the fleet
        collected += f'<br><span class="flag small">{escape(flag)}</span>'
    cells.append(f"<td>{collected}</td>")
    if ev is None:
        next_cell = "–"
    elif ev.next_step is None:
        next_cell = "up to date"
    else:
        next_cell = escape(str(ev.next_step))
        if ev.update_path:
            path = " → ".join(escape(u) for u in ev.update_path)
            count = len(ev.update_path)
            summary = f'<summary class="small">path: {count} update{"" if count == 1 else "s"}</summary>'
            next_cell += f"<details>{summary}{path}</details>"
    cells.append(f"<td>{next_cell}</td>")
    cells.append(f"<td>{_health_cell(stamp)}</td>")
    return f'<tr id="stamp-{escape(stamp.name)}" class="{verdict}">{"".join(cells)}</tr>'


def _health_cell(stamp: StampReport) -> str:
    """An admin stamp's active alerts and whether its next package could be started, in words."""
    status, obs, ready = stamp.status, stamp.status.observation, stamp.readiness
    if status.source != "admin" or obs is None:
        return "–"
    seen = stamp.health
    if seen is None or not seen.known:
        parts = [
            f'<span class="small">alerts not read{": " + escape(seen.error) if seen and seen.error else ""}</span>'
        ]
    else:
        text = escape(health_summary(seen))
        if seen.critical:
            text = f'<span class="down">{text}</span> ' + _runbook("azurestackstampcriticalhealthalert", "runbook")
        parts = [text]
        parts.extend(
            f'<span class="small">{escape(severity)}: {escape(title)}</span>' for severity, title in seen.titles
        )
        if seen.certificates:
            certificates = f"{seen.certificates} certificate{'s' if seen.certificates > 1 else ''} expiring"
            parts.append(
                f'<span class="flag">{certificates}</span> ' + _runbook("azurestackstampcertificateexpiring", "runbook")
            )
    if ready is not None and ready.in_progress:
        parts.append("<strong>update installing</strong> " + _runbook("azurestackstampupdateinprogress", "runbook"))
    if ready is not None and ready.package is not None:
        package = f"<code>{escape(ready.package)}</code>"
        if ready.ready:
            parts.append(f'<span class="ok">ready to install</span> {package}')
        elif ready.ready is None:
            parts.append(f"{package}: readiness unknown ({escape(ready.unknown or '')})")
        else:
            why = "".join(
                f"<li>{escape(reason)}: {escape(words)}</li>"
                for reason, words in zip(ready.blocked_by, ready.why, strict=True)
            )
            parts.append(
                f'<span class="down">{package} blocked</span> '
                + _runbook("azurestackstampupdateblocked", "runbook")
                + f'<ul class="small">{why}</ul>'
            )
    return "<br>".join(parts)


def render(report: Report, now: float, telemetry_path: str = "/metrics") -> str:
    stamps = sorted(report.stamps, key=_sort_key)
    counts = {key: sum(1 for s in report.stamps if s.verdict == key) for key in _ORDER}
    down = sum(1 for s in report.stamps if not s.status.up)
    # A stamp never read is "not collected" only; "not evaluated" is a collected one the catalog cannot place.
    counts["unknown"] = sum(1 for s in report.stamps if s.verdict == "unknown" and s.status.up)
    latest = report.catalog.latest
    n = report.policy.supported_releases
    window = ", ".join(["N"] + [f"N-{i}" for i in range(1, n)])
    latest_text = "none known"
    if latest is not None:
        latest_text = escape(latest.update)
        if latest.build:
            latest_text += f" (<code>{escape(str(latest.build))}</code>)"
        latest_text += f", {escape(dated_text(latest.released, latest.date_basis))}"
    cards = [
        ("bad", counts["out_of_support"], "out of support"),
        ("warn", counts["ending_soon"], "ending soon"),
        ("ok", counts["in_support"], "in support"),
        ("bad" if down else "ok", down, "not collected"),
    ]
    if counts["unknown"]:
        cards.insert(1, ("bad", counts["unknown"], "not evaluated"))
    exception = report.policy.active_exception
    if exception is not None:
        window += f" (exception until {exception.end}{': ' + escape(exception.reason) if exception.reason else ''})"
    alerts = "".join(f'<p class="alert">{escape(w)}</p>' for w in catalog_warnings(report))
    reload = report.reload
    if reload is not None and not reload.successful:
        refused = (
            f"The last reload ({_iso(reload.attempted_at)}) was refused; the configuration loaded "
            f"{_iso(reload.loaded_at)} keeps serving. Why: {escape(reload.error or 'unknown')}"
        )
        alerts = f'<p class="alert" id="reload">{refused}</p>' + alerts
    loaded = f" &middot; configuration loaded {_iso(reload.loaded_at)}" if reload is not None else ""
    fresh = report.fresh
    age_class = "alert" if fresh is None or fresh.stale is not False else "note"
    age = f'<p class="{age_class}" id="catalog-age">Catalog: {escape(freshness_text(report))}</p>'
    note = forecast_note(report)
    footnote = f'<p class="small" id="forecast-note">{escape(note)}</p>' if note else ""
    card_html = "".join(
        f'<div class="card {cls}"><span class="n">{num}</span>{label}</div>' for cls, num, label in cards
    )
    rows = "".join(_row(s, now) for s in stamps) or '<tr><td colspan="10">No stamps configured.</td></tr>'
    sources = "".join(
        f"<tr><td>{escape(src.kind)}</td><td><code>{escape(src.origin)}</code></td>"
        f'<td>{"up" if src.up else "<span class=down>failing</span>"}</td><td class="num">{src.releases}</td>'
        f"<td>{_age(now - src.last_success) if src.last_success else 'never'}</td>"
        f"<td>{escape(src.error or '')}</td></tr>"
        for src in report.sources
    )
    metrics = escape(telemetry_path)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Azure Stack Hub servicing</title>
<link rel="stylesheet" href="/static/status.css">
</head>
<body>
<header>
<h1>Azure Stack Hub servicing</h1>
<p class="meta">Supported: {window} &middot; latest release {latest_text}
&middot; {len(report.catalog.releases)} releases known
&middot; evaluated {_iso(report.generated_at)}{loaded}
&middot; <a href="{metrics}">metrics</a> &middot; <a href="/api/v1/stamps">JSON</a></p>
</header>
<main>
{alerts}
{age}
<section class="cards" aria-label="summary">{card_html}</section>
<h2>Stamps</h2>
<table id="stamps">
<thead><tr><th>Stamp</th><th>Version</th><th>Update</th><th>Behind</th><th>Verdict</th><th>Latest hotfix</th>
<th>Support ends</th><th>Update state and runs</th><th>Last collected</th><th>Next update</th>
<th>Health and readiness</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
{footnote}
<h2>Release catalog</h2>
<table id="sources">
<thead><tr><th>Source</th><th>Origin</th><th>State</th><th>Releases</th><th>Last read</th><th>Error</th></tr></thead>
<tbody>{sources}</tbody>
</table>
</main>
<footer>azurestack-exporter {escape(__version__)}</footer>
</body>
</html>
"""
    # Every text on it passed the border; this is the net under it: the page is always UTF-8.
    return page if page.isascii() else page.encode("utf-8", "replace").decode("utf-8")
