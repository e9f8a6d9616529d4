"""Property-based fuzzing of everything that reads outside input: the configuration loader,
the catalog parser, the update-graph parser and the admin API's JSON handling.

Whatever the input, each either succeeds or fails with its own error type (which the
exporter turns into a clear message, or a stamp or source down with a reason): never any
other exception. The budget is bounded so that ``make test`` stays quick; FUZZ_EXAMPLES
raises it for a longer run.
"""

from __future__ import annotations

import contextlib
import json
import os
import string

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.admin import CollectionError, parse_json, parse_timestamp, reading_from
from exporter.catalog import CatalogError, parse_catalog_document
from exporter.config import ConfigError, load_config, parse_yaml
from exporter.updategraph import GraphError, parse_edges, parse_manifest

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
# yaml_loader (conftest) chooses the YAML parser once per test, for every example alike.
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Values shaped like the real documents: the keys they use, versions, dates, and garbage.
KEYS = st.sampled_from(
    [
        "stamps", "name", "version", "admin", "endpoint", "tenant", "client_id", "client_secret_env", "labels",
        "policy", "supported_releases", "hotfix_grace_period", "exceptions", "from", "until", "catalog", "bundled",
        "releases", "update", "build", "released", "date_basis", "source", "hotfixes", "other_builds", "files",
        "urls", "oem", "refresh_interval", "timeout", "properties", "currentVersion", "state", "value",
        "lastUpdated", "packageType", "<<", "unknown",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1.2408.1.50", "1.0.180302.1", "2408", "9912", "2024-11-18", "2099-12-31", "2024-13", "45d"]),
    st.sampled_from(["adfs", "https://a.example", "documented", "documented_by", "0x1", "", " ", "\u00b2"]),
    st.text(max_size=20),
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(KEYS, children, max_size=6)),
    max_leaves=40,
)


@pytest.mark.usefixtures("yaml_loader")
@FUZZ
@given(DOCUMENTS)
def test_config_loader_accepts_or_refuses_clearly(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("fuzz") / "c.yml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    try:
        load_config(str(path))
    except ConfigError as err:
        assert str(err).startswith(str(path))


@pytest.mark.usefixtures("yaml_loader")
@FUZZ
@given(st.text(alphabet=string.printable + "&*!|>'\"%@`{}[]-:#\u00b2", max_size=300))
@example("stamps: !!int\n")  # PyYAML's own constructors raise IndexError or KeyError on these
@example("a: !!bool x\n")
def test_config_loader_survives_any_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "c.yml"
    path.write_text(text)
    with contextlib.suppress(ConfigError):
        load_config(str(path))


@FUZZ
@given(DOCUMENTS)
def test_catalog_parser_accepts_or_refuses_clearly(document):
    with contextlib.suppress(CatalogError):
        parse_catalog_document(document, "url")


@pytest.mark.usefixtures("yaml_loader")
@FUZZ
@given(st.text(max_size=300))
def test_downloaded_yaml_is_parsed_or_refused_as_yaml(text):
    with contextlib.suppress(yaml.YAMLError, RecursionError):
        parse_yaml(text, untrusted=True)


def _reading(text: str, *, untrusted: bool) -> tuple[object, ...]:
    """What parse_yaml makes of a text: its value, or the refusal with its words and place."""
    try:
        return ("value", repr(parse_yaml(text, untrusted=untrusted)))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        return (type(err).__name__, err.problem, mark and (mark.line, mark.column))
    except (yaml.YAMLError, RecursionError) as err:
        return (type(err).__name__, str(err))


@FUZZ
@given(st.text(alphabet=string.printable + "&*!|>'\"%@`{}[]-:#\u00b2\u0085\u2028\ufeff", max_size=80), st.booleans())
@example("a: 1\t\n", False)  # libyaml accepts a tab after a value
@example("a: 1\n\ufeffb: 2\n", False)  # a byte-order mark past the start
@example("a: |#\n  x\n", False)  # a comment right after a block indicator
@example("a: !\n", False)  # an empty value with a non-specific tag: libyaml reads text, not null
@example("a: b: c\n", True)  # libyaml words its refusals otherwise
@example("a: \x01\n", False)  # and places them otherwise (a byte offset)
@example("[" * 1500 + "]" * 1500, True)  # and stops at its own depth
@example("a: \ud800\n", False)  # a lone surrogate: libyaml's parser cannot even be given it
def test_libyaml_and_pythons_parser_read_every_text_alike(monkeypatch, text, untrusted):
    """The same value, or the same refusal in the same words at the same place, whether PyYAML
    has libyaml or not: texts the two parsers read apart are left to PyYAML's."""
    from exporter import config

    if config.C_LOADERS is None:  # PyPI's wheels all have it: in CI its absence is a failure
        (pytest.fail if os.environ.get("CI", "").lower() in ("1", "true", "yes") else pytest.skip)(
            "PyYAML is built without libyaml"
        )
    monkeypatch.setattr(config, "LOADERS", config.C_LOADERS)
    with_libyaml = _reading(text, untrusted=untrusted)
    monkeypatch.setattr(config, "LOADERS", None)
    assert _reading(text, untrusted=untrusted) == with_libyaml


ELEMENT_NAMES = st.sampled_from(["AzureStackUpdates", "CurrentVersion", "ApplicableUpdate", "MetadataFile", "Version",
                                 "Uri", "UpdateInfo", "x"])  # fmt: skip
XML = st.recursive(
    st.one_of(st.text(alphabet=string.ascii_letters + "0123456789.:/", max_size=15), st.just("")),
    lambda children: st.builds(
        lambda tag, attr, kids: f'<{tag} Version="{attr}">' + "".join(kids) + f"</{tag}>",
        ELEMENT_NAMES,
        st.sampled_from(["1.2408.1.50", "1.2501.0.21", "x", "", "1.9912.0.1"]),
        st.lists(children, max_size=4),
    ),
    max_leaves=20,
)


@FUZZ
@given(st.one_of(XML.map(str.encode), st.binary(max_size=300)))
def test_update_graph_parser_accepts_or_refuses_clearly(data):
    for parse in (parse_edges, parse_manifest):
        with contextlib.suppress(GraphError):
            parse(data)


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)),
    max_leaves=30,
)


@FUZZ
@given(JSON_VALUES, st.lists(st.dictionaries(KEYS, JSON_VALUES, max_size=4), max_size=5))
def test_admin_answers_are_read_or_refused_as_parse_errors(location, items):
    try:
        reading = reading_from(location, items, "2021-07-01", "local", "sub")
    except CollectionError as err:
        assert err.reason == "parse"
    else:
        assert reading.current_version.strip() == reading.current_version


@FUZZ
@given(st.one_of(st.binary(max_size=400), JSON_VALUES.map(lambda v: json.dumps(v).encode())))
def test_admin_json_bodies_are_parsed_or_refused(body):
    try:
        parse_json(body, "answer")
    except CollectionError as err:
        assert err.reason in ("parse", "size")


@FUZZ
@given(st.one_of(st.text(max_size=40), JSON_VALUES))
def test_timestamps_are_read_or_unknown(value):
    result = parse_timestamp(value)
    assert result is None or isinstance(result, float)
