"""The YAML configuration: loaded and validated completely before anything runs.

Every problem becomes one ``ConfigError`` naming the file, the key path
(``stamps[1].admin.client_id``) and what is wrong, so that ``--config.check``, start-up
and reload can all refuse a bad file with a message an operator can act on. Secrets are
never read here beyond checking that they can be: only their locations are kept.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import yaml

from .border import is_clean
from .catalog import (
    CatalogDocument,
    CatalogError,
    PartialDate,
    Release,
    future_confirmation,
    parse_catalog,
    parse_date,
    parse_releases,
)
from .files import read_bounded
from .policy import DEFAULT_HOTFIX_GRACE_SECONDS, DEFAULT_SUPPORTED_RELEASES, Policy, PolicyException
from .versions import Version, VersionError, oem_key, parse_version

T = TypeVar("T")

DEFAULT_REFRESH_INTERVAL = 300.0
DEFAULT_REFRESH_CONCURRENCY = 32
DEFAULT_ADMIN_TIMEOUT = 10.0
DEFAULT_REMOTE_TIMEOUT = 30.0

# Labels the exporter sets itself on azurestack_stamp_info; `labels:` may not reuse them.
RESERVED_LABELS = frozenset({"stamp", "version", "update_version", "oem_version", "source"})
_LABEL_NAME = re.compile(r"\A[a-zA-Z_][a-zA-Z0-9_]*\Z")
_DURATION = re.compile(r"\A(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m(?!s))?(?:([0-9]+)s)?(?:([0-9]+)ms)?\Z")
_DURATION_UNITS = (86400.0, 3600.0, 60.0, 1.0, 0.001)
MAX_DURATION_DIGITS = 9
# Upper bounds of configured durations and counts: beyond them a value is a mistake, not a choice.
MAX_REFRESH_INTERVAL = 86400.0  # a day: slower, and verdicts would trail the stamps by more than a day
MAX_TIMEOUT = 600.0  # ten minutes for one request
MAX_GRACE_PERIOD = 3650 * 86400.0  # ten years
MAX_RELEASES = 100  # supported releases: Microsoft supports three
MAX_NAME = 128  # characters of a stamp name
MAX_LABEL_VALUE = 256


class ConfigError(Exception):
    """A configuration problem: which file, which key, what is wrong."""

    def __init__(self, file: str, path: str, problem: str) -> None:
        self.file = file
        self.path = path
        self.problem = problem
        where = f"{file}: {path}" if path else file
        super().__init__(f"{where}: {problem}")

    @property
    def errors(self) -> list[ConfigError]:
        return [self]


class ConfigProblemsError(ConfigError):
    """Every problem of a configuration, each with its file and key path, said at once."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.file, first.path, first.problem)
        self._errors = errors
        files = {e.file for e in errors}
        lines = [(f"{e.path}: {e.problem}" if e.path else e.problem) if len(files) == 1 else str(e) for e in errors]
        header = f"{first.file}: {len(errors)} problems:" if len(files) == 1 else f"{len(errors)} problems:"
        self.args = ("\n  ".join([header, *lines]),)

    @property
    def errors(self) -> list[ConfigError]:
        return list(self._errors)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class AdminConfig:
    endpoint: str
    tenant: str
    client_id: str
    client_secret_file: str | None = None
    client_secret_env: str | None = None
    client_certificate_file: str | None = None
    ca_file: str | None = None
    location: str | None = None
    subscription_id: str | None = None
    timeout: float = DEFAULT_ADMIN_TIMEOUT


@dataclass(frozen=True, slots=True)
class StampConfig:
    name: str
    version: Version | None = None
    oem_version: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    admin: AdminConfig | None = None
    oem_family: str | None = None

    @property
    def source(self) -> str:
        return "admin" if self.admin else "static"


@dataclass(frozen=True)
class CatalogFile:
    path: str
    releases: tuple[Release, ...]
    confirmed: PartialDate | None = None  # the day its maintainer last confirmed it lists every release


@dataclass(frozen=True)
class RemoteSpec:
    """A catalog or update graph read over HTTP(S)."""

    url: str
    ca_file: str | None = None


@dataclass(frozen=True)
class CatalogConfig:
    bundled: bool = True
    files: tuple[CatalogFile, ...] = ()
    urls: tuple[RemoteSpec, ...] = ()
    update_graph: RemoteSpec | None = None
    releases: tuple[Release, ...] = ()
    timeout: float = DEFAULT_REMOTE_TIMEOUT
    # OEM package versions per OEM family (lower-cased), as given; ordered numerically.
    oem: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    path: str
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL
    refresh_concurrency: int = DEFAULT_REFRESH_CONCURRENCY
    policy: Policy = field(default_factory=Policy)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    stamps: tuple[StampConfig, ...] = ()
    state_file: str | None = None  # where first-seen dates of learned releases are kept across restarts


def config_warnings(config: Config) -> list[str]:
    """What is allowed but unwise: said by --config.check and logged at every load."""
    warnings = []
    remotes = [*config.catalog.urls, *([config.catalog.update_graph] if config.catalog.update_graph else [])]
    for spec in remotes:
        if urlsplit(spec.url).scheme == "http":
            warnings.append(
                f"catalog source {redact_url(spec.url)} is plain http://: anyone on the network path can change "
                "which releases the exporter believes in; use https://"
            )
    if not config.stamps:
        warnings.append("no stamps are configured: nothing is monitored")
    if config.state_file and not os.path.isdir(os.path.dirname(config.state_file) or "."):
        warnings.append(
            f"the directory of state_file {config.state_file} does not exist (yet): first-seen days of learned "
            "releases are not kept across restarts until it does"
        )
    return warnings


def redact_url(url: str) -> str:
    """A URL fit for labels, logs and messages: no user information, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# ---------------------------------------------------------------- YAML


MAX_MERGED_ENTRIES = 100_000  # entries YAML merge keys may add to one document


class _StrictConstructor(yaml.constructor.SafeConstructor):
    """Safe construction that refuses duplicate keys instead of silently keeping the last, and
    bounds what merge keys (``<<: *anchor``) add: nested merges grow exponentially."""

    merged = 0

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        before = len(node.value)
        super().flatten_mapping(node)
        self.merged += max(0, len(node.value) - before)
        if self.merged > MAX_MERGED_ENTRIES:
            raise yaml.constructor.ConstructorError(
                None, None, f"YAML merge keys expand to more than {MAX_MERGED_ENTRIES} entries", node.start_mark
            )


class _PlainComposer(yaml.composer.Composer):
    """For documents from the network: no anchors, aliases or merges of aliases at all."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()  # type: ignore[attr-defined]
        anchor = getattr(event, "anchor", None)  # pragma: no mutate - node events all have one
        if isinstance(event, yaml.AliasEvent) or anchor is not None:
            raise yaml.composer.ComposerError(
                None, None, "YAML anchors and aliases are not accepted in a downloaded document", event.start_mark
            )
        # No path resolvers are registered, so parent and index change nothing.
        return super().compose_node(parent, index)  # type: ignore[arg-type]  # pragma: no mutate


class _StrictLoader(_StrictConstructor, yaml.SafeLoader):
    """The pure-Python loader: PyYAML's own scanner, parser and composer."""


class _PlainLoader(_PlainComposer, _StrictLoader):
    """The pure-Python loader for downloaded documents."""


def _construct_mapping(loader: _StrictConstructor, node: yaml.MappingNode) -> dict[object, object]:
    loader.flatten_mapping(node)
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)  # pragma: no mutate - unhashable either way
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "found an unhashable key", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"found duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)  # pragma: no mutate - yaml.load fills shallow ones in the end


def _construct_timestamp(loader: _StrictConstructor, node: yaml.ScalarNode) -> str:
    """Keep dates as text: PyYAML raises a bare ValueError on 2024-13-01; catalog.parse_date explains."""
    return loader.construct_scalar(node)


def _checked(construct: Callable[[_StrictConstructor, yaml.ScalarNode], object]) -> Callable[..., object]:
    """PyYAML's int, float and bool constructors raise IndexError, KeyError or ValueError on a
    value tagged by hand (``!!int _``, ``!!bool x``): a YAML error at that value instead."""

    def checked(loader: _StrictConstructor, node: yaml.ScalarNode) -> object:
        try:
            return construct(loader, node)
        except (IndexError, KeyError, ValueError):
            kind = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a valid {kind}", node.start_mark
            ) from None

    return checked


_StrictConstructor.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictConstructor.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)
_SafeConstructor = yaml.constructor.SafeConstructor
_StrictConstructor.add_constructor("tag:yaml.org,2002:int", _checked(_SafeConstructor.construct_yaml_int))
_StrictConstructor.add_constructor("tag:yaml.org,2002:float", _checked(_SafeConstructor.construct_yaml_float))
_StrictConstructor.add_constructor("tag:yaml.org,2002:bool", _checked(_SafeConstructor.construct_yaml_bool))

YamlLoaders = tuple[type, type]  # (for local files, for downloaded documents)
PURE_LOADERS: YamlLoaders = (_StrictLoader, _PlainLoader)
C_LOADERS: YamlLoaders | None = None

if yaml.__with_libyaml__:  # PyPI's wheels all have libyaml; a build from source may not

    class _CStrictLoader(yaml.composer.Composer, _StrictConstructor, yaml.CSafeLoader):
        """libyaml's scanner and parser, where the pure-Python loader spends most of its time,
        under PyYAML's Python composer, placed first to replace libyaml's: it sees every anchor
        (libyaml's forgets them) and nests in Python, where depth ends in a RecursionError
        (libyaml's nests on the C stack without a bound: PyYAML 6.0.1's libyaml 0.2.5 crashes
        on a document 200,000 levels deep)."""

        def __init__(self, stream: str) -> None:
            yaml.CSafeLoader.__init__(self, stream)
            yaml.composer.Composer.__init__(self)

        def compose_scalar_node(self, anchor: str | None) -> yaml.ScalarNode:
            event = self.peek_event()
            if event.tag == "!":  # ``a: !`` is null to PyYAML's parser, text to libyaml's
                event.implicit = (True, False)
            return super().compose_scalar_node(anchor)

    class _CPlainLoader(_PlainComposer, _CStrictLoader):
        """The libyaml loader for downloaded documents."""

    C_LOADERS = (_CStrictLoader, _CPlainLoader)

LOADERS: YamlLoaders | None = C_LOADERS  # None: the pure-Python loader alone
_BLOCK_COMMENT = re.compile("[|>][-+0-9]*#")


def _read_apart(text: str) -> bool:
    """Whether libyaml may read the text where PyYAML's parser refuses it, or read it otherwise:
    a tab (libyaml accepts one after a value), a byte-order mark past the first character, a
    comment right after a block scalar's indicator (``|#``)."""
    return "\t" in text or text.find("\ufeff", 1) >= 0 or _BLOCK_COMMENT.search(text) is not None


def parse_yaml(text: str, *, untrusted: bool = False) -> object:
    """Parse YAML text safely, refusing duplicate keys; raises yaml.YAMLError (or RecursionError).

    ``untrusted`` (a downloaded document): anchors and aliases are refused outright.
    With libyaml, a document is read by its parser, unless ``_read_apart``; one it refuses
    is read again by PyYAML's, so that a refusal has the same words and place with or
    without libyaml (libyaml words its own, and stops at its own depth).
    """
    if LOADERS is not None and not _read_apart(text):
        try:
            return yaml.load(text, Loader=LOADERS[untrusted])  # noqa: S506 - SafeConstructor only
        except (yaml.YAMLError, RecursionError, ValueError, TypeError):
            pass  # refused: PyYAML's parser has the last word
    return yaml.load(text, Loader=PURE_LOADERS[untrusted])  # noqa: S506 - SafeConstructor only


def load_yaml(file: str) -> object:
    """Read and parse one YAML file; any failure is a ``ConfigError`` for that file."""
    try:
        text = read_bounded(file).decode("utf-8")  # pragma: no mutate - codec names are case-insensitive
    except OSError as err:
        raise ConfigError(file, "", f"cannot read file: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(file, "", "file is not UTF-8 text") from None
    except ValueError as err:
        raise ConfigError(file, "", f"cannot read file: it {err}") from None
    try:
        return parse_yaml(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        # pragma: no mutate start - PyYAML's parser and our constructors always give a mark and a problem
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = err.problem or "invalid YAML"
        # pragma: no mutate end
        raise ConfigError(file, where, f"YAML error: {problem}") from None
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as err:
        raise ConfigError(file, "", f"YAML error: {err}") from None


def load_bundled_document() -> CatalogDocument:
    """The catalog shipped inside the package (``exporter/data/catalog.yml``), with its confirmed day."""
    ref = resources.files("exporter") / "data" / "catalog.yml"
    return parse_catalog(parse_yaml(ref.read_text(encoding="utf-8")), "bundled")


def load_bundled_catalog() -> tuple[Release, ...]:
    """The bundled catalog's releases."""
    return load_bundled_document().releases


# ---------------------------------------------------------------- validation helpers


def parse_duration(value: object) -> float:
    """``30s``, ``5m``, ``1h30m``, ``45d``, ``500ms`` → seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match and any(len(g) > MAX_DURATION_DIGITS for g in match.groups() if g):
            raise ValueError(f"{value[:40]!r}{'...' if len(value) > 40 else ''} is far too long a duration")
        if match and any(match.groups()):
            # pragma: no mutate start - one pattern group per unit: zip's strictness never matters
            return sum(int(g) * unit for g, unit in zip(match.groups(), _DURATION_UNITS, strict=True) if g)
            # pragma: no mutate end
    raise ValueError(f"{value!r} is not a duration: use a number with a unit s, m, h or d, such as 30s, 5m or 45d")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    return f"a {type(value).__name__}"


class _Checker:
    """Validation helpers that raise ConfigError for one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.base = os.path.dirname(os.path.abspath(file))
        self.errors: list[ConfigError] = []  # every problem found so far, in the order of the file

    def fail(self, path: str, problem: str) -> ConfigError:
        return ConfigError(self.file, path, problem)

    def part(self, parse: Callable[..., T], *args: object, default: T | None = None, **kwargs: object) -> T | None:
        """Validate one part; a problem in it is recorded and the rest goes on (``default`` stands in)."""
        try:
            return parse(*args, **kwargs)
        except ConfigProblemsError as err:
            self.errors.extend(err.errors)
        except ConfigError as err:
            self.errors.append(err)
        return default

    def mapping(self, value: object, path: str, allowed: tuple[str, ...]) -> Mapping[str, object]:
        """A mapping; each key it has that is not allowed is recorded as a problem, and left out."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path or "(top level)", f"must be a mapping, not {_kind(value)}")
        known = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.errors.append(self.fail(path or "(top level)", f"key {key!r} must be a string"))
            elif key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)  # pragma: no mutate - only the best is used
                suggestion = f"; did you mean '{hint[0]}'?" if hint else f" (allowed: {', '.join(allowed)})"
                self.errors.append(self.fail(_join(path, key), f"unknown key{suggestion}"))
            else:
                known[key] = item
        return known

    def string(self, value: object, path: str, *, required: bool = False) -> str | None:
        if value is None:
            if required:
                raise self.fail(path, "required key missing")
            return None
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, not {_kind(value)} (quote it)")
        if not value.strip():
            raise self.fail(path, "must not be empty")
        return value

    def boolean(self, value: object, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, not {_kind(value)}")
        return value

    def duration(self, value: object, path: str, default: float, maximum: float) -> float:
        if value is None:
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as err:
            raise self.fail(path, str(err)) from None
        if seconds <= 0:
            raise self.fail(path, "must be longer than zero")
        if seconds > maximum:
            raise self.fail(path, f"must be at most {_duration_text(maximum)}")
        return seconds

    def text(self, value: object, path: str, limit: int) -> str | None:
        """A string that is printable as it is (no control characters), at most ``limit`` characters."""
        text = self.string(value, path)
        if text is None:
            return None
        if len(text) > limit:
            raise self.fail(path, f"must be at most {limit} characters")
        if not is_clean(text.strip()):
            raise self.fail(path, "must be printable text: no control characters, line breaks or lone surrogates")
        return text

    def string_list(self, value: object, path: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list, not {_kind(value)}")
        return [self.string(item, f"{path}[{i}]", required=True) for i, item in enumerate(value)]

    def readable_file(self, value: str, path: str) -> str:
        resolved = os.path.join(self.base, value)  # an absolute value stays as it is
        try:
            read_bounded(resolved)
        except ValueError as err:
            raise self.fail(path, f"{value} {err}") from None
        except OSError as err:
            raise self.fail(path, f"cannot read {value}: {err.strerror or err}") from None
        return resolved

    def ca_bundle(self, value: str, path: str) -> str:
        """A readable file of PEM certificates, loaded now rather than at the first connection, by
        OpenSSL as the connections will load it (the cryptography package, 10 MiB of memory, is
        imported only where a client certificate needs it)."""
        resolved = self.readable_file(value, path)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=resolved)
        except ssl.SSLError:  # no certificate, or one that cannot be read
            raise self.fail(path, f"{value} holds no readable PEM certificate") from None
        except OSError as err:
            raise self.fail(path, f"cannot read {value}: {err.strerror or err}") from None
        return resolved

    def url(self, value: str, path: str, schemes: tuple[str, ...]) -> str:
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise self.fail(path, f"{value!r} is not an {' or '.join(s + '://' for s in schemes)} URL")
        return value


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------- sections


def _count(check: _Checker, value: object, path: str, default: int | None) -> int:
    """A release count; ``default`` None makes the key required."""
    if value is None and default is None:
        raise check.fail(path, "required key missing")
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int):
        kind = repr(value) if isinstance(value, float) else _kind(value)
        raise check.fail(path, f"must be a whole number, not {kind}")
    if value < 1:
        raise check.fail(path, "must be at least 1 (3 means N, N-1 and N-2)")
    if value > MAX_RELEASES:
        raise check.fail(path, f"must be at most {MAX_RELEASES} (3 means N, N-1 and N-2)")
    return value


def _exception(check: _Checker, value: object, path: str) -> PolicyException:
    if value is None:
        raise check.fail(path, "must be a mapping, not null")
    item = check.mapping(value, path, ("from", "until", "supported_releases", "reason"))

    def day(key: str) -> dt.date:
        raw = item.get(key)
        if raw is None:
            raise check.fail(f"{path}.{key}", "required key missing")
        try:
            date = parse_date(raw)
        except ValueError as err:
            raise check.fail(f"{path}.{key}", str(err)) from None
        if date.day is None:
            raise check.fail(f"{path}.{key}", "needs a day: YYYY-MM-DD")
        return date.first_day()

    start, end = check.part(day, "from"), check.part(day, "until")
    if start is not None and end is not None and end < start:
        check.errors.append(check.fail(f"{path}.until", "is before 'from'"))
    supported = check.part(_count, check, item.get("supported_releases"), f"{path}.supported_releases", None)
    reason = check.part(check.text, item.get("reason"), f"{path}.reason", 200) or ""
    return PolicyException(start or dt.date.min, end or dt.date.min, supported or 1, reason)


def _policy(check: _Checker, value: object) -> Policy:
    keys = ("supported_releases", "hotfix_grace_period", "oem_supported_releases", "exceptions")
    item = check.mapping(value, "policy", keys)
    supported = check.part(
        _count, check, item.get("supported_releases"), "policy.supported_releases", DEFAULT_SUPPORTED_RELEASES
    )
    oem = check.part(
        _count, check, item.get("oem_supported_releases"), "policy.oem_supported_releases", DEFAULT_SUPPORTED_RELEASES
    )
    grace = check.part(
        check.duration,
        item.get("hotfix_grace_period"),
        "policy.hotfix_grace_period",
        DEFAULT_HOTFIX_GRACE_SECONDS,
        MAX_GRACE_PERIOD,
    )
    raw = item.get("exceptions")
    if raw is not None and not isinstance(raw, list):
        check.errors.append(check.fail("policy.exceptions", f"must be a list, not {_kind(raw)}"))
        raw = []
    exceptions = [check.part(_exception, check, e, f"policy.exceptions[{i}]") for i, e in enumerate(raw or [])]
    return Policy(
        supported_releases=supported or DEFAULT_SUPPORTED_RELEASES,
        hotfix_grace_period=grace or DEFAULT_HOTFIX_GRACE_SECONDS,
        oem_supported_releases=oem or DEFAULT_SUPPORTED_RELEASES,
        exceptions=tuple(e for e in exceptions if e is not None),
    )


def _catalog_file(check: _Checker, name: str, path: str) -> CatalogFile:
    resolved = check.readable_file(name, path)
    document = load_yaml(resolved)
    try:
        parsed = parse_catalog(document, "file")
    except CatalogError as err:
        raise ConfigError(resolved, err.path, err.problem) from None
    if future_confirmation(parsed.confirmed, time.time()):  # dated ahead, it would silence staleness until then
        raise ConfigError(resolved, "confirmed", f"{parsed.confirmed} is in the future")
    return CatalogFile(resolved, parsed.releases, parsed.confirmed)


def _catalog(check: _Checker, value: object) -> CatalogConfig:
    keys = ("bundled", "files", "urls", "update_graph_url", "releases", "ca_file", "timeout", "oem")
    item = check.mapping(value, "catalog", keys)
    bundled = check.part(check.boolean, item.get("bundled"), "catalog.bundled", True, default=True)
    names = check.part(check.string_list, item.get("files"), "catalog.files", default=[]) or []
    files = [check.part(_catalog_file, check, name, f"catalog.files[{i}]") for i, name in enumerate(names)]
    ca_file = None
    if item.get("ca_file") is not None:
        ca_file = check.part(_ca_file, check, item["ca_file"], "catalog.ca_file")
    raw_urls = item.get("urls")
    if raw_urls is not None and not isinstance(raw_urls, list):
        check.errors.append(check.fail("catalog.urls", f"must be a list, not {_kind(raw_urls)}"))
        raw_urls = []
    urls = [check.part(_remote, check, entry, f"catalog.urls[{i}]", ca_file) for i, entry in enumerate(raw_urls or [])]
    graph = None
    if item.get("update_graph_url") is not None:
        graph = check.part(_remote, check, item["update_graph_url"], "catalog.update_graph_url", ca_file)
    timeout = check.part(check.duration, item.get("timeout"), "catalog.timeout", DEFAULT_REMOTE_TIMEOUT, MAX_TIMEOUT)
    oem = check.part(_oem_catalogs, check, item.get("oem"), default={})

    def inline() -> list[Release]:
        try:
            return parse_releases(item.get("releases"), "catalog.releases", "inline")
        except CatalogError as err:
            raise check.fail(err.path, err.problem) from None

    releases = check.part(inline, default=[])
    return CatalogConfig(
        bundled=bool(bundled),
        files=tuple(f for f in files if f is not None),
        urls=tuple(u for u in urls if u is not None),
        update_graph=graph,
        releases=tuple(releases or ()),
        timeout=timeout or DEFAULT_REMOTE_TIMEOUT,
        oem=oem or {},
    )


def _ca_file(check: _Checker, value: object, path: str) -> str:
    return check.ca_bundle(check.string(value, path), path)  # type: ignore[arg-type]


def _remote(check: _Checker, value: object, path: str, default_ca: str | None) -> RemoteSpec:
    """A URL, or a mapping {url, ca_file}."""
    if isinstance(value, str):
        return RemoteSpec(check.url(value, path, ("http", "https")), default_ca)
    if not isinstance(value, Mapping):
        raise check.fail(path, f"must be a URL or a mapping with url and ca_file, not {_kind(value)}")
    item = check.mapping(value, path, ("url", "ca_file"))
    url = check.part(
        lambda: check.url(check.string(item.get("url"), f"{path}.url", required=True), f"{path}.url", ("http", "https"))  # type: ignore[arg-type]
    )
    ca = default_ca
    if item.get("ca_file") is not None:
        ca = check.part(_ca_file, check, item["ca_file"], f"{path}.ca_file")
    return RemoteSpec(url or "", ca)


def _oem_catalogs(check: _Checker, value: object) -> dict[str, tuple[str, ...]]:
    """OEM package versions per OEM family: {Dell: [2.4.2411.6, ...]}."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise check.fail("catalog.oem", f"must be a mapping of OEM family to package versions, not {_kind(value)}")
    families: dict[str, tuple[str, ...]] = {}

    def family_versions(family: object, versions: object) -> None:
        path = f"catalog.oem.{family}"
        if not isinstance(family, str) or not family.strip():
            raise check.fail("catalog.oem", f"{family!r} is not an OEM family name")
        if not isinstance(versions, list) or not versions:
            raise check.fail(path, "must be a non-empty list of OEM package versions")
        parsed = []
        for index, version in enumerate(versions):
            if not isinstance(version, str) or oem_key(version) is None:
                raise check.fail(f"{path}[{index}]", f"{version!r} is not an OEM package version such as 2.4.2411.6")
            parsed.append(version.strip())
        families[family.strip().lower()] = tuple(sorted(set(parsed), key=oem_key))  # type: ignore[arg-type]

    for family, versions in value.items():
        check.part(family_versions, family, versions)
    return families


_ADMIN_KEYS = (
    "endpoint",
    "tenant",
    "client_id",
    "client_secret_file",
    "client_secret_env",
    "client_certificate_file",
    "ca_file",
    "location",
    "subscription_id",
    "timeout",
)
_CREDENTIALS = ("client_secret_file", "client_secret_env", "client_certificate_file")


def _admin(check: _Checker, value: object, path: str) -> AdminConfig:
    item = check.mapping(value, path, _ADMIN_KEYS)

    def endpoint() -> str:
        text = check.string(item.get("endpoint"), f"{path}.endpoint", required=True)
        return check.url(text, f"{path}.endpoint", ("https",)).rstrip("/")  # type: ignore[arg-type]

    url = check.part(endpoint)
    tenant = check.part(check.string, item.get("tenant"), f"{path}.tenant", required=True)
    client_id = check.part(check.string, item.get("client_id"), f"{path}.client_id", required=True)
    given = [key for key in _CREDENTIALS if item.get(key) is not None]
    if not given:
        check.errors.append(check.fail(path, f"one credential is required: {', '.join(_CREDENTIALS)}"))
    if len(given) > 1:
        problem = f"give only one credential, not both {given[0]} and {given[1]}"
        check.errors.append(check.fail(f"{path}.{given[1]}", problem))
    secret_file = cert_file = secret_env = ca_file = None
    if item.get("client_secret_file") is not None:
        where = f"{path}.client_secret_file"
        secret_file = check.part(lambda: check.readable_file(check.string(item["client_secret_file"], where), where))  # type: ignore[arg-type]
    if item.get("client_certificate_file") is not None:
        where = f"{path}.client_certificate_file"

        def certificate() -> str:
            file = check.readable_file(check.string(item["client_certificate_file"], where), where)  # type: ignore[arg-type]
            _check_pem_pair(check, file, where)
            return file

        cert_file = check.part(certificate)
    if item.get("client_secret_env") is not None:

        def environment() -> str | None:
            name = check.string(item["client_secret_env"], f"{path}.client_secret_env")
            if not os.environ.get(name):  # type: ignore[arg-type]
                raise check.fail(f"{path}.client_secret_env", f"environment variable {name} is not set or empty")
            return name

        secret_env = check.part(environment)
    if item.get("ca_file") is not None:
        ca_file = check.part(_ca_file, check, item["ca_file"], f"{path}.ca_file")
    return AdminConfig(
        endpoint=url or "",
        tenant=tenant or "",
        client_id=client_id or "",
        client_secret_file=secret_file,
        client_secret_env=secret_env,
        client_certificate_file=cert_file,
        ca_file=ca_file,
        location=check.part(check.string, item.get("location"), f"{path}.location"),
        subscription_id=check.part(check.string, item.get("subscription_id"), f"{path}.subscription_id"),
        timeout=check.part(check.duration, item.get("timeout"), f"{path}.timeout", DEFAULT_ADMIN_TIMEOUT, MAX_TIMEOUT)
        or DEFAULT_ADMIN_TIMEOUT,
    )


def _check_pem_pair(check: _Checker, file: str, path: str) -> None:
    """The certificate and its unencrypted private key, in PEM, belonging together."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = read_bounded(file)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise check.fail(path, "the file holds no PEM certificate (it needs the certificate and its private key)")
    if b"PRIVATE KEY-----" not in data:
        raise check.fail(path, "the file holds no PEM private key (it needs the certificate and its private key)")
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise check.fail(path, "the PEM certificate cannot be read") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise check.fail(path, "the private key is encrypted; give it unencrypted (protect the file instead)") from None
    except ValueError:
        raise check.fail(path, "the PEM private key cannot be read") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != certificate.public_key().public_bytes(
        serialization.Encoding.DER, public
    ):
        raise check.fail(path, "the private key does not belong to the certificate")


def _labels(check: _Checker, value: object, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise check.fail(path, f"must be a mapping of label names to values, not {_kind(value)}")
    labels = {}

    def label(key: object, raw: object) -> None:
        if not isinstance(key, str) or not _LABEL_NAME.match(key) or key.startswith("__"):
            raise check.fail(path, f"{key!r} is not a valid Prometheus label name")
        if key in RESERVED_LABELS:
            raise check.fail(f"{path}.{key}", "is set by the exporter itself; choose another label name")
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise check.fail(f"{path}.{key}", f"must be a string, not {_kind(raw)}")
        labels[key] = (check.text(str(raw), f"{path}.{key}", MAX_LABEL_VALUE) or "") if str(raw).strip() else str(raw)

    for key, raw in value.items():
        check.part(label, key, raw)
    return labels


def _stamp(check: _Checker, value: object, path: str) -> StampConfig:
    if value is None:
        raise check.fail(path, "must be a mapping, not null")
    item = check.mapping(value, path, ("name", "version", "oem_version", "oem_family", "labels", "admin"))

    def name() -> str:
        text = check.text(item.get("name"), f"{path}.name", MAX_NAME)
        if text is None:
            raise check.fail(f"{path}.name", "required key missing")
        return text.strip()

    stamp_name = check.part(name)
    has_version, has_admin = item.get("version") is not None, item.get("admin") is not None
    if has_version == has_admin:
        problem = "needs exactly one of 'version' (a static stamp) or 'admin' (read from its admin endpoint)"
        check.errors.append(check.fail(path, problem))
    version = None
    if has_version:

        def build() -> Version:
            try:
                return parse_version(item["version"])
            except VersionError as err:
                raise check.fail(f"{path}.version", str(err)) from None

        version = check.part(build)
    oem = check.part(check.text, item.get("oem_version"), f"{path}.oem_version", 64)
    admin = check.part(_admin, check, item["admin"], f"{path}.admin") if has_admin and not has_version else None
    return StampConfig(
        name=stamp_name or "",
        version=version,
        oem_version=oem.strip() if oem else None,
        labels=check.part(_labels, check, item.get("labels"), f"{path}.labels", default={}) or {},
        admin=admin,
        oem_family=check.part(check.text, item.get("oem_family"), f"{path}.oem_family", 64),
    )


def parse_config(document: object, file: str) -> Config:
    """Validate a parsed YAML document; reads only the files it references.

    Every problem is found, not only the first: a ``ConfigError`` for one, ``ConfigProblemsError`` for
    several, each with its file and key path.
    """
    check = _Checker(file)
    keys = ("refresh_interval", "refresh_concurrency", "policy", "catalog", "stamps", "state_file")
    top = check.mapping(document, "", keys)  # pragma: no mutate - "" and None both mean the top level
    refresh = check.part(
        check.duration, top.get("refresh_interval"), "refresh_interval", DEFAULT_REFRESH_INTERVAL, MAX_REFRESH_INTERVAL
    )
    concurrency = top.get("refresh_concurrency", DEFAULT_REFRESH_CONCURRENCY)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
        check.errors.append(check.fail("refresh_concurrency", "must be a whole number from 1 to 256"))
        concurrency = DEFAULT_REFRESH_CONCURRENCY
    raw_stamps = top.get("stamps")
    if raw_stamps is not None and not isinstance(raw_stamps, list):
        check.errors.append(check.fail("stamps", f"must be a list, not {_kind(raw_stamps)}"))
        raw_stamps = []
    stamps = []
    names: dict[str, int] = {}
    for index, raw in enumerate(raw_stamps or []):
        stamp = check.part(_stamp, check, raw, f"stamps[{index}]")
        if stamp is None or not stamp.name:
            continue
        if stamp.name in names:
            problem = f"duplicate stamp name {stamp.name!r} (also stamps[{names[stamp.name]}])"
            check.errors.append(check.fail(f"stamps[{index}].name", problem))
            continue
        names[stamp.name] = index
        stamps.append(stamp)
    policy = check.part(_policy, check, top.get("policy"))
    catalog = check.part(_catalog, check, top.get("catalog"))
    state_file = check.part(_state_file, check, top.get("state_file"))
    if check.errors:
        raise check.errors[0] if len(check.errors) == 1 else ConfigProblemsError(check.errors)
    assert policy is not None and catalog is not None and refresh is not None
    return Config(
        path=file,
        refresh_interval=refresh,
        refresh_concurrency=concurrency,
        policy=policy,
        catalog=catalog,
        stamps=tuple(stamps),
        state_file=state_file,
    )


def _state_file(check: _Checker, value: object) -> str | None:
    """A file the exporter may create and replace: its directory must exist."""
    name = check.string(value, "state_file")
    if name is None:
        return None
    resolved = os.path.join(check.base, name)
    if os.path.isdir(resolved):
        raise check.fail("state_file", f"{name} is a directory; name a file in it, such as state.json")
    return resolved  # a directory still to be made (systemd's StateDirectory) is a warning, not an error


def load_config(file: str) -> Config:
    """Load and validate a configuration file, or raise ``ConfigError``."""
    return parse_config(load_yaml(file), file)
