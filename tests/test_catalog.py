"""The release catalog: schema, the bundled file, merging sources, observed releases."""

from __future__ import annotations

import datetime as dt

import pytest

from exporter.catalog import (
    Catalog,
    CatalogError,
    Hotfix,
    PartialDate,
    Release,
    merge,
    parse_catalog_document,
    parse_date,
    parse_releases,
)
from exporter.config import load_bundled_catalog, parse_yaml
from exporter.policy import Policy, evaluate
from exporter.versions import parse_version

ALL_RELEASES = [
    *("1802", "1803", "1804", "1805", "1807", "1808", "1809", "1811"),
    *("1901", "1902", "1903", "1904", "1905", "1906", "1907", "1908", "1910"),
    *("2002", "2005", "2008", "2102", "2108", "2206", "2301", "2306", "2311"),
    *("2406", "2408", "2501", "2506", "2601"),
]


def v(text: str):
    return parse_version(text)


def doc(text: str):
    return parse_yaml(text)


# ---------------------------------------------------------------- bundled


def test_bundled_catalog_has_every_known_release_in_order():
    bundled = load_bundled_catalog()
    assert [r.update for r in bundled] == ALL_RELEASES
    assert all(r.sources == ("bundled",) for r in bundled)


@pytest.mark.parametrize(
    ("update", "build", "latest_hotfix"),
    [
        ("1802", "1.0.180302.1", "1.0.180302.4"),
        ("1804", "1.0.180513.1", "1.0.180527.15"),
        ("1811", "1.1811.0.101", None),
        ("1908", "1.1908.4.33", "1.1908.59.150"),
        ("2206", "1.2206.0.6", "1.2206.2.77"),
        ("2601", "1.2601.0.4", "1.2601.1.14"),
        ("1805", "1.1805.1.47", "1.1805.7.57"),
        ("1809", "1.1809.0.90", "1.1809.12.114"),
        ("2005", "1.2005.6.53", "1.2005.48.137"),
        ("2008", "1.2008.13.88", "1.2008.41.161"),
        ("2102", "1.2102.28.82", "1.2102.31.153"),
        ("2406", "1.2406.0.8", "1.2406.1.23"),
        ("2408", "1.2408.0.19", "1.2408.1.50"),
        ("2506", "1.2506.0.15", "1.2506.3.30"),
        ("2601", "1.2601.0.4", "1.2601.1.14"),
        ("1908", "1.1908.4.33", "1.1908.59.150"),
        ("2206", "1.2206.0.6", "1.2206.2.77"),
    ],
)
def test_bundled_catalog_base_builds_and_latest_hotfixes(update, build, latest_hotfix):
    release = Catalog.of(load_bundled_catalog()).get(update)
    assert release is not None
    assert str(release.build) == build
    assert (str(release.latest_hotfix.build) if release.latest_hotfix else None) == latest_hotfix


def test_bundled_dates_say_how_they_are_known_and_undated_hotfixes_stay_undated():
    bundled = load_bundled_catalog()
    assert all(r.released is not None and r.date_basis in ("documented", "documented_by") for r in bundled)
    hotfixes = [h for r in bundled for h in r.hotfixes]
    assert all((h.date_basis in ("documented", "documented_by")) == (h.released is not None) for h in hotfixes)
    assert any(h.released is None and h.date_basis == "unknown" for h in hotfixes)
    assert all(h.citation for h in hotfixes)


def test_legacy_hotfixes_belong_to_their_release():
    catalog = Catalog.of(load_bundled_catalog())
    assert catalog.update_version_of(v("1.0.180424.12")) == "1803"
    ev = evaluate(v("1.0.180329.1"), catalog, Policy())
    assert ev.latest_hotfix == v("1.0.180427.15") and ev.latest_hotfix_installed is False


def test_other_base_builds_are_never_hotfixes():
    catalog = Catalog.of(load_bundled_catalog())
    rereleased = evaluate(v("1.1901.0.99"), catalog, Policy())
    assert rereleased.update_version == "1901"
    assert [str(h.build) for h in rereleased.missing_hotfixes] == ["1.1901.2.103", "1.1901.3.105", "1.1901.5.109"]
    original = evaluate(v("1.1901.0.95"), catalog.with_observed([v("1.1901.0.99")]), Policy())
    assert v("1.1901.0.99") not in [h.build for h in original.missing_hotfixes]


# ---------------------------------------------------------------- schema


def test_full_schema_parses():
    releases = parse_catalog_document(
        doc(
            """
            releases:
              - update: "2408"
                build: 1.2408.0.19
                released: 2024-11-05
                hotfixes:
                  - build: 1.2408.1.50
                    released: 2025-07
            """
        ),
        "file",
    )
    assert releases == [
        Release(
            update="2408",
            build=v("1.2408.0.19"),
            released=PartialDate(2024, 11, 5),
            hotfixes=(Hotfix(v("1.2408.1.50"), PartialDate(2025, 7)),),
            sources=("file",),
        )
    ]


def test_hotfixes_are_sorted_by_build():
    (release,) = parse_releases(
        [
            {
                "update": "2008",
                "build": "1.2008.13.88",
                "hotfixes": [{"build": "1.2008.41.161"}, {"build": "1.2008.20.102"}],
            }
        ],
        "releases",
        "inline",
    )
    assert [str(h.build) for h in release.hotfixes] == ["1.2008.20.102", "1.2008.41.161"]


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("releases: [{build: 1.2408.0.19}]", "releases[0].update", "required key missing"),
        ("releases: [{update: '2413'}]", "releases[0].update", "not a YYMM"),
        (
            "releases: [{update: '2408', build: 1.2501.0.21}]",
            "releases[0].build",
            "does not belong to update version 2408",
        ),
        ("releases: [{update: '2408', build: 1.2408}]", "releases[0].build", "must be a string"),
        ("releases: [{update: '2408', released: 2024-13-01}]", "releases[0].released", "YYYY-MM-DD"),
        ("releases: [{update: '2408', released: 'November 2024'}]", "releases[0].released", "YYYY-MM-DD"),
        ("releases: [{update: '2408', date: 2024-11}]", "releases[0].date", "unknown key"),
        ("releases: [{update: '2408'}, {update: '2408'}]", "releases[1].update", "listed twice"),
        (
            "releases: [{update: '2408', build: 1.2408.0.19, hotfixes: [{build: 1.2408.0.19}]}]",
            "releases[0].hotfixes[0].build",
            "not above the base build",
        ),
        (
            "releases: [{update: '2408', hotfixes: [{build: 1.2501.1.47}]}]",
            "releases[0].hotfixes[0].build",
            "does not belong to update version 2408",
        ),
        (
            "releases: [{update: '2408', hotfixes: [{build: 1.2408.1.50}, {build: 1.2408.1.50}]}]",
            "releases[0].hotfixes[1].build",
            "listed twice",
        ),
        ("releases: {update: '2408'}", "releases", "must be a list"),
        ("- update: '2408'", "", "must be a mapping"),
        ("versions: []", "versions", "unknown key"),
    ],
)
def test_schema_errors_name_the_key_path(text, path, fragment):
    with pytest.raises(CatalogError) as info:
        parse_catalog_document(doc(text), "file")
    assert info.value.path == path
    assert fragment in info.value.problem


def test_dates():
    assert parse_date("2024-11-05") == PartialDate(2024, 11, 5)
    assert parse_date("2024-11") == PartialDate(2024, 11)
    assert parse_date(dt.date(2024, 11, 5)) == PartialDate(2024, 11, 5)
    assert PartialDate(2024, 11).timestamp() == dt.datetime(2024, 11, 1, tzinfo=dt.UTC).timestamp()
    assert str(PartialDate(2025, 7)) == "2025-07"
    for bad in ("2024-02-30", "2024", "24-11-05", 20241105):
        with pytest.raises(ValueError):
            parse_date(bad)


# ---------------------------------------------------------------- merging


def rel(update: str, source: str, **fields) -> Release:
    return Release(update=update, sources=(source,), **fields)


def test_merge_is_one_release_per_update_version_with_known_fields_winning():
    bundled = [rel("2408", "bundled", build=v("1.2408.0.19"), hotfixes=(Hotfix(v("1.2408.1.50")),))]
    inline = [
        rel(
            "2408",
            "inline",
            released=PartialDate(2024, 11),
            hotfixes=(Hotfix(v("1.2408.1.50"), PartialDate(2025, 7, 30)),),
        ),
        rel("2601", "inline", build=v("1.2601.0.4")),
    ]
    catalog = merge([inline, bundled])
    assert [r.update for r in catalog.releases] == ["2408", "2601"]
    merged = catalog.get("2408")
    assert merged.build == v("1.2408.0.19")
    assert merged.released == PartialDate(2024, 11)
    assert merged.hotfixes == (Hotfix(v("1.2408.1.50"), PartialDate(2025, 7, 30)),)
    assert merged.sources == ("inline", "bundled")
    assert merged.source == "inline"


def test_merge_earlier_source_wins_a_conflict():
    first = [rel("2408", "file", build=v("1.2408.0.19"), released=PartialDate(2024, 11, 5))]
    second = [rel("2408", "bundled", build=v("1.2408.0.7"), released=PartialDate(2024, 10))]
    merged = merge([first, second]).get("2408")
    assert merged.build == v("1.2408.0.19")
    assert merged.released == PartialDate(2024, 11, 5)


def test_merge_unions_hotfixes_and_drops_those_not_above_the_base_build():
    first = [rel("2008", "file", build=v("1.2008.13.88"), hotfixes=(Hotfix(v("1.2008.41.161")),))]
    second = [rel("2008", "bundled", hotfixes=(Hotfix(v("1.2008.2.5")), Hotfix(v("1.2008.20.102"))))]
    merged = merge([first, second]).get("2008")
    assert [str(h.build) for h in merged.hotfixes] == ["1.2008.20.102", "1.2008.41.161"]


def test_legacy_builds_map_through_base_builds():
    catalog = Catalog.of(load_bundled_catalog())
    assert catalog.update_version_of(v("1.0.180302.1")) == "1802"
    assert catalog.update_version_of(v("1.0.180329.1")) == "1803"
    assert catalog.update_version_of(v("1.0.180410.2")) == "1803"
    assert catalog.update_version_of(v("1.0.180513.1")) == "1804"
    assert catalog.update_version_of(v("1.0.180103.2")) is None
    assert catalog.update_version_of(v("1.2008.13.88")) == "2008"


# ---------------------------------------------------------------- observed


def test_a_running_version_the_catalog_lacks_joins_as_observed():
    catalog = Catalog.of([rel("2506", "bundled", build=v("1.2506.0.15"))]).with_observed([v("1.2608.0.3")])
    assert [r.update for r in catalog.releases] == ["2506", "2608"]
    assert catalog.get("2608").sources == ("observed",)
    assert catalog.get("2608").build is None


def test_an_unknown_build_above_a_known_base_joins_as_a_hotfix():
    catalog = Catalog.of([rel("2506", "bundled", build=v("1.2506.0.15"), hotfixes=(Hotfix(v("1.2506.2.24")),))])
    observed = catalog.with_observed([v("1.2506.3.30"), v("1.2506.0.15"), v("1.2506.2.24")])
    assert [str(h.build) for h in observed.get("2506").hotfixes] == ["1.2506.2.24", "1.2506.3.30"]
    assert observed.get("2506").sources == ("bundled",)


def test_known_versions_change_nothing():
    base = Catalog.of(load_bundled_catalog())
    assert base.with_observed([v("1.2408.1.50"), v("1.0.180302.1")]).releases == base.releases
