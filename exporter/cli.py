"""Command line: the exporter server (default) and the ``check`` command.

Exit codes: 0 success / all in support, 1 a stamp out of support (``check``) or a
runtime failure (server), 2 usage or configuration error, 3 (``check``) none out of
support but some stamp could not be evaluated.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

from . import __version__
from .config import ConfigError, config_warnings, load_config
from .logs import LEVELS, setup_logging
from .metrics import build_registry
from .report import exit_code, render_table, to_json
from .service import Exporter, evaluate_config
from .web import REQUEST_TIMEOUT, ExporterHTTPServer, parse_listen_address, raise_file_limit
from .webconfig import WebSecurity, load_web_config

EXIT_CONFIG = 2
SHUTDOWN_GRACE = 10.0
DEFAULT_CONFIG = "azurestack-exporter.yml"

log = logging.getLogger("exporter")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"configuration file (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=list(LEVELS),
        help="only log messages of this severity or above (default: info)",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        default="logfmt",
        choices=["logfmt", "json"],
        help="log format (default: logfmt)",
    )


def server_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azurestack-exporter",
        description="Prometheus exporter of Azure Stack Hub servicing-policy compliance. "
        "Run 'azurestack-exporter check --help' for the one-shot report.",
    )
    _common(parser)
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=":10132",
        metavar="[HOST]:PORT",
        help="address to listen on (default: :10132)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default="",
        metavar="FILE",
        help="web configuration (TLS, basic auth, headers) in the Prometheus exporter-toolkit format",
    )
    parser.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        default="/metrics",
        metavar="PATH",
        help="path under which to expose metrics (default: /metrics)",
    )
    parser.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration, print a one-line verdict and exit 0 (valid) or 2",
    )
    parser.add_argument("--version", action="version", version=f"azurestack-exporter {__version__}")
    return parser


def check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azurestack-exporter check",
        description="Collect once, evaluate every stamp against the servicing policy and print a report. "
        "Exit 0: all in support; 1: a stamp is out of support; 3: none out of support but a stamp "
        "could not be evaluated; 2: usage or configuration error.",
    )
    _common(parser)
    parser.add_argument("--output", default="table", choices=["table", "json"], help="report format (default: table)")
    return parser


def _config_error(err: ConfigError) -> int:
    print(f"azurestack-exporter: configuration error: {err}", file=sys.stderr)
    return EXIT_CONFIG


def run_check(argv: Sequence[str]) -> int:
    args = check_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        config = load_config(args.config_file)
    except ConfigError as err:
        return _config_error(err)
    if not config.stamps:
        # A gate that passes with nothing monitored would be worse than no gate.
        print(
            f"azurestack-exporter: {args.config_file} configures no stamps: check has nothing to vouch for "
            "(add stamps, see examples/azurestack-exporter.yml)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    report = evaluate_config(config, time.time())
    if args.output == "json":
        print(json.dumps(to_json(report), indent=2))
    else:
        sys.stdout.write(render_table(report))
    return exit_code(report)


def run_config_check(config_file: str, web_config_file: str = "") -> int:
    try:
        config = load_config(config_file)
        load_web_config(web_config_file)
    except ConfigError as err:
        return _config_error(err)
    static = sum(1 for s in config.stamps if s.admin is None)
    count = len(config.stamps)
    print(
        f"{config_file}: configuration is valid: {count} stamp{'' if count == 1 else 's'} "
        f"({static} static, {count - static} admin)"
    )
    for warning in config_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


class _Reloads:
    """Reloads run one at a time; requests that arrive while one runs share the next one.

    A reload asked for at time t is answered by a reload that started after t, so it sees
    the files as they were then; 200 simultaneous requests cost two reloads, not 200.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = 0
        self._finished_run = 0
        self._result: tuple[bool, str] = (True, "")

    def run(self, reload: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
        arrived = self._started
        with self._lock:
            if self._finished_run > arrived:
                return self._result  # a reload that started after this request has answered it
            self._started += 1
            run = self._started
            try:
                self._result = reload()
            except Exception as err:
                log.exception("Reload failed")
                self._result = (False, f"reload failed: {type(err).__name__}")
            self._finished_run = run
            return self._result


class _Signals:
    """Signals recorded, never acted on, in their handlers: the C handler writes the signal's
    number to a pipe (``signal.set_wakeup_fd``) and the main thread reads it. Nothing runs
    inside a handler, so no lock can be taken twice and no handler can block."""

    HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._closed = False
        for signum in self.HANDLED:
            signal.signal(signum, self._record)

    @staticmethod
    def _record(signum: int, frame: object) -> None:
        """The Python-level handler: the number is already in the pipe."""

    def wait(self) -> list[int]:
        """Block until signals arrive; their numbers, in order (a full pipe drops repeats)."""
        while True:
            select.select([self._read], [], [])
            try:
                data = os.read(self._read, 4096)
            except BlockingIOError:
                continue
            if data:
                return list(data)

    def close(self) -> None:
        """Ignore these signals from now on: at exit Python puts back the default actions of
        the signals it handled, and a late SIGHUP would then end the process by its signal."""
        if self._closed:
            return
        self._closed = True
        for signum in self.HANDLED:
            signal.signal(signum, signal.SIG_IGN)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._read)
        os.close(self._write)


class _Reloader:
    """Reloads asked for by SIGHUP, run on one thread: any number of signals that arrive while
    a reload runs are answered by one more."""

    def __init__(self, reload: Callable[[], tuple[bool, str]]) -> None:
        self._reload = reload
        self._wanted = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sighup-reload", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            self._reload()

    def stop(self, timeout: float) -> None:
        self._stopping = True
        self._wanted.set()
        self._thread.join(timeout)


def run_server(args: argparse.Namespace) -> int:
    signals = _Signals()  # first: a signal that arrives while starting is kept for the loop below
    try:
        return _serve(args, signals)
    finally:
        signals.close()


def _serve(args: argparse.Namespace, signals: _Signals) -> int:
    setup_logging(args.log_level, args.log_format)
    try:
        host, port = parse_listen_address(args.listen_address)
    except ValueError as err:
        print(f"azurestack-exporter: {err}", file=sys.stderr)
        return EXIT_CONFIG
    exporter = Exporter(args.config_file)
    try:
        security = load_web_config(args.web_config_file)
        exporter.load()
    except ConfigError as err:
        return _config_error(err)
    # The server adds the per-stamp part (written stamp by stamp) and process_*.
    registry = build_registry(exporter.snapshot, process_metrics=False, stamps=False)
    try:
        raise_file_limit()  # as Go programs do: the hard limit is the real bound
    except (OSError, ValueError) as err:
        log.warning("Cannot raise the open-file limit", extra={"err": str(err)})
    try:
        server = ExporterHTTPServer((host, port), exporter, registry, args.telemetry_path, security)
    except OSError as err:
        log.error("Cannot listen", extra={"address": args.listen_address, "err": err.strerror or str(err)})
        return 1

    reloads = _Reloads()

    def reload_once() -> tuple[bool, str]:
        """Both files are validated before either is applied."""
        checked: list[WebSecurity] = []
        ok, message = exporter.reload(also=lambda: checked.append(load_web_config(args.web_config_file)))
        if ok:
            # Whom the new web configuration lets in see the new configuration's answer, never
            # the old one: its users and TLS apply once the exposition shows the reload.
            server.renderer.wait_rendered(exporter.snapshot(), timeout=REQUEST_TIMEOUT)
            server.security = checked[-1]
        return ok, message

    def reload_all() -> tuple[bool, str]:
        return reloads.run(reload_once)

    server.reload_hook = reload_all
    reloader = _Reloader(reload_all)
    server.start()
    exporter.start()
    scheme = "https" if security.tls else "http"
    log.info(
        "Listening",
        extra={
            "address": args.listen_address,
            "scheme": scheme,
            "version": __version__,
            "max_connections": server.max_connections,
        },
    )
    while True:
        received = signals.wait()
        if signal.SIGTERM in received or signal.SIGINT in received:
            break
        if signal.SIGHUP in received:
            reloader.request()
    log.info("Shutting down")
    signals.close()  # later signals change nothing
    # Stop accepting; answers being written may finish; then the rest is closed.
    if not server.shutdown(SHUTDOWN_GRACE):
        log.warning("Requests still running at shutdown", extra={"grace_seconds": SHUTDOWN_GRACE})
    server.server_close()
    exporter.stop()
    reloader.stop(SHUTDOWN_GRACE)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "check":
        return run_check(argv[1:])
    args = server_parser().parse_args(argv)
    if args.config_check:
        return run_config_check(args.config_file, args.web_config_file)
    return run_server(args)


def entry_point() -> None:
    """Console-script entry: exit quietly on Ctrl-C or a closed pipe."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
