#!/usr/bin/env python3
"""Subject removal: take away what an end-to-end test is about, and see that test fail.

mutmut judges the modules that tests call in process. The HTTP server, the scheduler, the
catalog sources, the reload path and the logs are judged by end-to-end tests that run the
installed command, which mutmut does not see. Each subject below removes one thing those
tests claim to check (a limit, a refusal, a header, a deadline, a retry) from a copy of the
tree, and runs the tests that claim it against the copy; a removal the tests still pass is
a survivor, printed with the tests that missed it.

    python tools/remove_subjects.py                 # every subject, one at a time
    python tools/remove_subjects.py --only web-     # subjects whose name starts with web-
    python tools/remove_subjects.py --list

The tests of every subject are first run on the unchanged tree: a failure there is not a
kill. Exit 0 when every removal is caught, 1 when one survives, 2 when a subject no longer
matches the code (the table needs updating with the code).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".git", ".venv", "mutants", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "build", "dist"}


@dataclass(frozen=True)
class Subject:
    name: str
    file: str  # relative to the root
    old: str  # must occur exactly once
    new: str
    tests: tuple[str, ...]  # pytest node ids

    def stale(self, root: Path) -> str | None:
        """Why the subject no longer matches the code at ``root``, or None."""
        count = (root / self.file).read_text().count(self.old)
        return None if count == 1 else f"{self.name}: {self.file} holds {count} copies of {self.old!r}, not 1"

    def apply(self, root: Path) -> None:
        path = root / self.file
        path.write_text(path.read_text().replace(self.old, self.new))


WEB = "exporter/web.py"
HOSTILE = "tests/test_web_hostile.py::"
SECURITY = "tests/test_web_security.py::"
EXPOSITION = "tests/test_exposition.py::"
ADMIN = "tests/test_admin_e2e.py::"
SOURCES = "tests/test_sources_e2e.py::"

SUBJECTS = (
    # The HTTP server: limits, framing, TLS, auth, headers, readiness.
    Subject(
        "web-header-budget",
        WEB,
        "_HeaderBudget(real, MAX_HEADER_BYTES - len(self.raw_requestline))",
        "_HeaderBudget(real, 10**9)",
        (HOSTILE + "test_megabytes_of_headers_get_431_and_memory_stays_flat",),
    ),
    Subject(
        "web-request-deadline",
        WEB,
        "key = REAPER.watch(self.connection, time.monotonic() + REQUEST_TIMEOUT)",
        "key = None",
        (HOSTILE + "test_a_request_that_trickles_in_is_cut_off_at_the_request_deadline",),
    ),
    Subject(
        "web-framing",
        WEB,
        "problem = self._framing_problem()",
        "problem = None",
        (HOSTILE + "test_ambiguous_framing_is_refused",),
    ),
    Subject(
        "web-connection-cap",
        WEB,
        "full = len(self._connections) >= self.max_connections",
        "full = False",
        (HOSTILE + "test_more_idle_connections_than_descriptors_shed_the_idle_and_scrapes_go_on",),
    ),
    Subject(
        "web-shed-idle",
        WEB,
        "victim = self._pop_idle() if full else None",
        "victim = None",
        (HOSTILE + "test_more_idle_connections_than_descriptors_shed_the_idle_and_scrapes_go_on",),
    ),
    Subject(
        "web-file-limit",
        "exporter/cli.py",
        "raise_file_limit()  # as Go programs do",
        "int()  # as Go programs do",
        (HOSTILE + "test_more_idle_connections_than_descriptors_shed_the_idle_and_scrapes_go_on",),
    ),
    Subject(
        "web-basic-auth",
        WEB,
        "if urlsplit(self.path).path in UNAUTHENTICATED or self._authorized():",
        "if True:",
        (SECURITY + "test_basic_auth",),
    ),
    Subject(
        "web-health-without-auth",
        WEB,
        "if urlsplit(self.path).path in UNAUTHENTICATED or self._authorized():",
        "if self._authorized():",
        (SECURITY + "test_basic_auth",),
    ),
    Subject(
        "web-client-allowed-sans",
        WEB,
        "if tls.client_allowed_sans and not",
        "if False and not",
        (SECURITY + "test_client_allowed_sans",),
    ),
    Subject(
        "web-plain-http-on-tls",
        WEB,
        "if first[0] != TLS_HANDSHAKE_RECORD:",
        "if False:",
        (SECURITY + "test_tls_serves_https_and_answers_plain_http_with_400",),
    ),
    Subject(
        "web-page-csp",
        WEB,
        'extra.setdefault("Content-Security-Policy", PAGE_CSP)',
        "pass",
        (EXPOSITION + "test_health_ready_landing_and_api",),
    ),
    Subject(
        "web-configured-headers",
        WEB,
        "extra.update(self.security.headers)",
        "pass",
        (SECURITY + "test_tls_serves_https_and_answers_plain_http_with_400",),
    ),
    Subject(
        "web-head-has-no-body",
        WEB,
        'if self.command != "HEAD":',
        "if True:",
        (EXPOSITION + "test_head_answers_headers_only_and_the_connection_stays_in_step",),
    ),
    Subject(
        "web-not-ready-until-evaluated",
        WEB,
        "if self.server.exporter.ready.is_set():",
        "if True:",
        (ADMIN + "test_sigterm_with_a_read_in_flight_exits_promptly",),
    ),
    Subject(
        "web-probe-unknown-target",
        WEB,
        "if stamp is None:\n            self._text(HTTPStatus.BAD_REQUEST",
        "if False:\n            self._text(HTTPStatus.BAD_REQUEST",
        (SECURITY + "test_probe_returns_one_stamps_series",),
    ),
    Subject(
        "web-status-page-escapes",
        "exporter/statuspage.py",
        "from html import escape",
        "escape = str",
        (SECURITY + "test_html_is_escaped",),
    ),
    # Reloads.
    Subject(
        "reload-coalesced",
        "exporter/cli.py",
        "if self._finished_run > arrived:",
        "if False:",
        (HOSTILE + "test_two_hundred_simultaneous_reloads_are_all_answered",),
    ),
    Subject(
        "reload-web-config",
        "exporter/cli.py",
        "server.security = checked[-1]",
        "pass",
        (SECURITY + "test_reload_by_sighup_and_a_bad_web_config_on_reload",),
    ),
    Subject(
        "reload-on-sighup",
        "exporter/cli.py",
        "signal.signal(signal.SIGHUP,",
        "(lambda *_: None)(signal.SIGHUP,",
        (SECURITY + "test_reload_by_sighup_and_a_bad_web_config_on_reload",),
    ),
    Subject(
        "shutdown-drains",
        "exporter/cli.py",
        "if not server.drain(SHUTDOWN_GRACE):",
        "if False:",
        (EXPOSITION + "test_sigterm_lets_a_scrape_being_served_finish",),
    ),
    # Reading admin stamps: the schedule, failures, and what a failure leaves.
    Subject(
        "admin-failure-marks-down",
        "exporter/collect.py",
        "return replace(previous, up=False, error=str(error),",
        "return replace(previous, up=previous.up, error=str(error),",
        (ADMIN + "test_a_failing_stamp_keeps_its_last_good_values",),
    ),
    Subject(
        "admin-failure-counted",
        "exporter/collect.py",
        "errors[error.reason] = errors.get(error.reason, 0) + 1",
        "pass",
        (ADMIN + "test_every_fault_marks_only_its_stamp_down_and_recovers",),
    ),
    Subject(
        "admin-read-republished",
        "exporter/service.py",
        '            log.debug("Collection succeeded", extra=fields)\n        self._dirty.set()',
        '            log.debug("Collection succeeded", extra=fields)',
        (ADMIN + "test_every_fault_marks_only_its_stamp_down_and_recovers",),
    ),
    Subject(
        "admin-ready-waits-for-reads",
        "exporter/service.py",
        "stamps_read = all(entry.attempted or entry.client is None for entry in self._entries.values())",
        "stamps_read = True",
        (ADMIN + "test_adfs_secret_and_entra_certificate_stamps_are_read_and_evaluated",),
    ),
    Subject(
        "admin-refresh-interval",
        "exporter/collect.py",
        "delay = 0.0 if name in self._rerun else self._interval * spread",
        "delay = 0.0 if name in self._rerun else 3600.0",
        (ADMIN + "test_every_fault_marks_only_its_stamp_down_and_recovers",),
    ),
    Subject(
        "admin-whole-request-deadline",
        "exporter/deadline.py",
        "_current.keys.append(REAPER.watch(sock, deadline))",
        "pass",
        (ADMIN + "test_every_fault_marks_only_its_stamp_down_and_recovers",),
    ),
    Subject(
        "admin-read-kept-across-reload",
        "exporter/service.py",
        "entry = current  # a reload that kept the client keeps the read",
        "pass  # a reload that kept the client keeps the read",
        (ADMIN + "test_a_reload_during_a_first_read_keeps_that_read",),
    ),
    # Catalog sources.
    Subject(
        "source-tls-verified",
        "exporter/sources.py",
        "BoundedSession(self.ca_file or True,",
        "BoundedSession(False,",
        (SOURCES + "test_an_https_catalog_is_verified_against_its_ca_file_and_never_the_environment",),
    ),
    Subject(
        "source-future-refused",
        "exporter/sources.py",
        "problem = future_problem(release, now)",
        "problem = None",
        (SOURCES + "test_a_hostile_catalog_is_refused_and_changes_no_verdict",),
    ),
    Subject(
        "source-keeps-last-good",
        "exporter/sources.py",
        "except CollectionError as err:\n                self.up, self.error = False, str(err)",
        "except CollectionError as err:\n                self.up, self.error, self.releases = False, str(err), ()",
        (SOURCES + "test_remote_catalog_200_304_404_timeout_and_recovery",),
    ),
    Subject(
        "source-conditional-request",
        "exporter/sources.py",
        'headers["If-None-Match"] = self.etag',
        "pass",
        (SOURCES + "test_remote_catalog_200_304_404_timeout_and_recovery",),
    ),
    Subject(
        "source-deadline",
        "exporter/sources.py",
        "session.deadline = time.monotonic() + 3 * self.timeout",
        "session.deadline = time.monotonic() + 3600",
        (SOURCES + "test_an_update_graph_and_its_manifests_share_one_deadline",),
    ),
    # Secrets never reach logs.
    Subject(
        "logs-scrub-message",
        "exporter/logs.py",
        "record.msg = scrub(record.getMessage())",
        "record.msg = record.getMessage()",
        (
            ADMIN + "test_wrong_secret_is_an_auth_error_and_no_secret_appears_anywhere",
            ADMIN + "test_a_token_endpoint_echoing_the_form_leaks_the_secret_nowhere_and_json_logs_stay_json",
            ADMIN + "test_a_catalog_url_query_never_reaches_errors_logs_or_pages",
        ),
    ),
    Subject(
        "logs-scrub-fields",
        "exporter/logs.py",
        "record.__dict__[key] = scrub(value)",
        "pass",
        (
            "tests/test_scrub.py::test_structured_fields_are_scrubbed_too",
            ADMIN + "test_wrong_secret_is_an_auth_error_and_no_secret_appears_anywhere",
            ADMIN + "test_a_token_endpoint_echoing_the_form_leaks_the_secret_nowhere_and_json_logs_stay_json",
            ADMIN + "test_a_catalog_url_query_never_reaches_errors_logs_or_pages",
        ),
    ),
    # Exposition.
    Subject(
        "metrics-stamp-up",
        "exporter/metrics.py",
        "up.add_metric([name], 1 if status.up else 0)",
        "up.add_metric([name], 1)",
        (ADMIN + "test_every_fault_marks_only_its_stamp_down_and_recovers",),
    ),
    Subject(
        "metrics-source-up",
        "exporter/metrics.py",
        "source_up.add_metric([src.kind, src.origin], 1 if src.up else 0)",
        "source_up.add_metric([src.kind, src.origin], 1)",
        (SOURCES + "test_remote_catalog_200_304_404_timeout_and_recovery",),
    ),
)


def copy_tree(destination: Path) -> None:
    shutil.copytree(ROOT, destination, ignore=lambda _, names: [n for n in names if n in SKIP])


def run_tests(root: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "timed out"
    lines = (result.stdout + result.stderr).strip().splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return result.returncode, (failed or lines or [""])[0][:200]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", default="", help="run the subjects whose name starts with this")
    parser.add_argument("--list", action="store_true", help="list the subjects and their tests")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per subject's tests")
    args = parser.parse_args()
    chosen = [s for s in SUBJECTS if s.name.startswith(args.only)]
    if args.list:
        for subject in chosen:
            print(f"{subject.name}: {subject.file}: {subject.old!r} -> {subject.new!r}")
        return 0
    stale = [problem for subject in chosen if (problem := subject.stale(ROOT))]
    if stale:  # every subject must still match the code before anything runs
        print("\n".join(f"stale: {problem}" for problem in stale), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="subjects-") as scratch:
        baseline = Path(scratch) / "baseline"
        copy_tree(baseline)
        tests = tuple(dict.fromkeys(t for s in chosen for t in s.tests))
        code, last = run_tests(baseline, tests, args.timeout * 2)
        if code != 0:
            print(f"the unchanged tree fails its own tests ({last}); nothing is measured", file=sys.stderr)
            return 2
        survivors = []
        for subject in chosen:
            started = time.monotonic()
            tree = Path(scratch) / subject.name
            copy_tree(tree)
            subject.apply(tree)
            code, last = run_tests(tree, subject.tests, args.timeout)
            verdict = "killed" if code in (1, -1) else "SURVIVED" if code == 0 else f"error {code}"
            print(f"{verdict:>8}  {subject.name}  ({time.monotonic() - started:.0f} s)  {last}", flush=True)
            if code not in (1, -1):
                survivors.append(subject)
            shutil.rmtree(tree, ignore_errors=True)
    killed = len(chosen) - len(survivors)
    print(f"\n{killed} of {len(chosen)} subjects removed were caught ({100 * killed / max(1, len(chosen)):.1f} %)")
    for subject in survivors:
        print(f"  survivor: {subject.name}: {subject.file}: {subject.old!r} -> {subject.new!r}")
        print(f"            tests: {', '.join(subject.tests)}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
