"""The release catalog: schema, the bundled file, merging sources, observed releases."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

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


def test_a_legacy_build_is_skipped_and_the_builds_after_it_still_count():
    catalog = Catalog.of([rel("2506", "bundled", build=v("1.2506.0.15"))])
    observed = catalog.with_observed([v("1.0.180302.1"), v("1.2608.0.3")])
    assert [r.update for r in observed.releases] == ["2506", "2608"]


def test_a_yaml_timestamp_is_its_date():
    from exporter.catalog import parse_date

    assert parse_date(dt.datetime(2025, 1, 2, 23, 59, tzinfo=dt.UTC)) == PartialDate(2025, 1, 2)


def test_known_versions_change_nothing():
    base = Catalog.of(load_bundled_catalog())
    assert base.with_observed([v("1.2408.1.50"), v("1.0.180302.1")]).releases == base.releases


# ---------------------------------------------------------------- every message, pinned
#
# Each bad catalog below, with the key path and problem it gives, is pinned in
# tests/golden/catalog-errors.txt (regenerate with UPDATE_GOLDEN=1 and read the diff).

R = "releases: [{update: '2408', build: 1.2408.0.19"
CATALOG_ERROR_CASES = [
    "- update: '2408'",
    "7",
    "versions: []",
    "releases: {update: '2408'}",
    "releases: [7]",
    "releases: [null]",
    "releases: [{build: 1.2408.0.19}]",
    "releases: [{update: '2413'}]",
    "releases: [{update: '2408', build: 1.2501.0.21}]",
    "releases: [{update: '2408', build: 1.2408}]",
    "releases: [{update: '2408', build: [1]}]",
    "releases: [{update: '2408'}, {update: '2408'}]",
    "releases: [{update: '2408', date: 2024-11}]",
    "releases: [{update: '2408', released: 2024-13-01}]",
    "releases: [{update: '2408', released: 'November 2024'}]",
    "releases: [{update: '2408', released: 2024-11, date_basis: guessed}]",
    "releases: [{update: '2408', released: 2024-11, date_basis: 7}]",
    "releases: [{update: '2408', date_basis: documented}]",
    "releases: [{update: '2408', released: 2024-11, date_basis: unknown}]",
    "releases: [{update: '2408', source: ''}]",
    "releases: [{update: '2408', source: '   '}]",
    "releases: [{update: '2408', source: 5}]",
    f"releases: [{{update: '2408', source: '{'x' * 501}'}}]",
    R + ", other_builds: 1.2408.0.20}]",
    R + ", other_builds: [1.2408.0.19]}]",
    R + ", other_builds: [1.2501.0.21]}]",
    R + ", other_builds: [1.2408.0.20, 1.2408.0.20]}]",
    R + ", other_builds: [banana]}]",
    R + ", other_builds: [1.2408.0.20], hotfixes: [{build: 1.2408.0.20}]}]",
    R + ", hotfixes: {build: 1.2408.1.50}}]",
    R + ", hotfixes: [7]}]",
    R + ", hotfixes: [{released: 2025-01}]}]",
    R + ", hotfixes: [{build: 1.2408.0.19}]}]",
    R + ", hotfixes: [{build: 1.2408.0.7}]}]",
    R + ", hotfixes: [{build: 1.2501.1.47}]}]",
    R + ", hotfixes: [{build: 1.2408.1.50}, {build: 1.2408.1.50}]}]",
    R + ", hotfixes: [{build: 1.2408.1.50, kb: 1}]}]",
    R + ", hotfixes: [{build: 1.2408.1.50, released: 2025-02-30}]}]",
    R + ", hotfixes: [{build: 1.2408.1.50, date_basis: announced}]}]",
    R + ", hotfixes: [{build: 1.2408.1.50, released: 2025-02, date_basis: unknown}]}]",
    R + ", hotfixes: [{build: 1.2408.1.50, source: ''}]}]",
    "releases: [{update: '1804', hotfixes: [{build: 1.0.180527.1}]}]",
    "releases: [{update: '1804', build: 1.1804.0.21, hotfixes: [{build: 1.0.180527.1}]}]",
    "releases: [{update: '1804', build: 1.0.180513.1, hotfixes: [{build: 1.0.180505.1}]}]",
]


def test_every_bad_catalog_gives_its_pinned_key_path_and_problem():
    def error(text: str) -> str:
        try:
            parse_catalog_document(doc(text), "file")
        except CatalogError as err:
            assert str(err) == (f"{err.path}: {err.problem}" if err.path else err.problem)
            return f"{err.path}: {err.problem}"
        return "(accepted)"

    actual = "".join(f"{case[:160]}\n  => {error(case)}\n" for case in CATALOG_ERROR_CASES)
    golden = Path(__file__).parent / "golden" / "catalog-errors.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(actual)
    assert actual == golden.read_text()
    assert "(accepted)" not in actual


def test_a_catalog_error_without_a_path_is_its_problem_alone():
    assert str(CatalogError("", "broken")) == "broken"
    assert str(CatalogError("releases[0]", "broken")) == "releases[0]: broken"


def test_dated_text_says_how_a_date_is_known():
    from exporter.catalog import dated_text

    day = PartialDate(2026, 4, 8)
    assert dated_text(None, "documented") == "date unknown"
    assert dated_text(day, None) == "released 2026-04-08"
    assert dated_text(day, "exact") == "released 2026-04-08"
    assert dated_text(day, "documented") == "first documented 2026-04-08"
    assert dated_text(day, "documented_by") == "documented by 2026-04-08"
    assert dated_text(PartialDate(2026, 4), "announced") == "announced for 2026-04"
    assert dated_text(day, "rumoured") == "released 2026-04-08"


def test_sources_and_bases_are_kept_stripped():
    (release,) = parse_releases(
        doc(
            "- {update: '2408', build: 1.2408.0.19, released: 2024-11-05, date_basis: documented, source: ' docs ',"
            " hotfixes: [{build: 1.2408.1.50, released: 2025-01, date_basis: announced, source: kb}]}"
        ),
        "releases",
        "file",
    )
    assert (release.citation, release.date_basis, release.released) == ("docs", "documented", PartialDate(2024, 11, 5))
    assert release.hotfixes == (Hotfix(v("1.2408.1.50"), PartialDate(2025, 1), "announced", "kb"),)
    assert parse_releases(doc(f"- {{update: '2408', source: '{'x' * 500}'}}"), "r", "file")[0].citation == "x" * 500
    assert parse_releases(doc("- {update: 2408}"), "r", "file")[0].update == "2408"  # unquoted YAML reads a number


NOV_23 = dt.datetime(2026, 11, 23, 23, 30, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("release", "problem"),
    [
        (Release("2611"), None),
        (Release("2612"), "update version 2612 is beyond the current month"),
        (Release("2611", released=PartialDate(2026, 11, 24)), None),
        (Release("2611", released=PartialDate(2026, 11, 25)), "2611 is dated 2026-11-25, in the future"),
        (Release("2611", released=PartialDate(2026, 12)), "2611 is dated 2026-12, in the future"),
        (
            Release("2611", hotfixes=(Hotfix(v("1.2611.1.1")), Hotfix(v("1.2611.2.1"), PartialDate(2027, 1, 2)))),
            "1.2611.2.1 is dated 2027-01-02, in the future",
        ),
    ],
)
def test_future_releases_are_named_with_the_reason(release, problem):
    from exporter.catalog import current_update_version, future_problem

    assert current_update_version(NOV_23) == "2611"
    assert current_update_version(dt.datetime(2099, 1, 1, tzinfo=dt.UTC).timestamp()) == "9901"
    assert future_problem(release, NOV_23) == problem


def test_tomorrow_is_tomorrow_in_utc_not_in_local_time():
    """At 05:00 UTC it is still the day before 12 hours west (where the tests run): a release
    dated tomorrow in UTC is allowed, one dated the day after is not."""
    from exporter.catalog import future_problem

    early = dt.datetime(2026, 11, 23, 5, tzinfo=dt.UTC).timestamp()
    assert future_problem(Release("2611", released=PartialDate(2026, 11, 24)), early) is None
    assert future_problem(Release("2611", released=PartialDate(2026, 11, 25)), early) == (
        "2611 is dated 2026-11-25, in the future"
    )


def test_merge_takes_a_date_with_its_basis_and_source_from_one_record():
    first = [
        rel(
            "2408",
            "file",
            citation="file note",
            other_builds=(v("1.2408.0.21"),),
            hotfixes=(Hotfix(v("1.2408.1.50")), Hotfix(v("1.2408.2.3"), PartialDate(2025, 3), "announced", "kb1")),
        )
    ]
    second = [
        rel(
            "2408",
            "bundled",
            build=v("1.2408.0.19"),
            released=PartialDate(2024, 11, 5),
            date_basis="documented",
            citation="bundled note",
            other_builds=(v("1.2408.0.20"),),
            hotfixes=(
                Hotfix(v("1.2408.1.50"), PartialDate(2025, 1, 30), "documented", "kb0"),
                Hotfix(v("1.2408.2.3"), PartialDate(2025, 2), "documented", "kb2"),
                Hotfix(v("1.2408.0.21")),
            ),
        )
    ]
    merged = merge([first, second]).get("2408")
    assert (merged.released, merged.date_basis, merged.citation) == (
        PartialDate(2024, 11, 5),
        "documented",
        "file note",
    )
    assert merged.other_builds == (v("1.2408.0.20"), v("1.2408.0.21"))
    assert merged.hotfixes == (
        Hotfix(v("1.2408.1.50"), PartialDate(2025, 1, 30), "documented", "kb0"),
        Hotfix(v("1.2408.2.3"), PartialDate(2025, 3), "announced", "kb1"),
    )
    reverse = merge([second, first]).get("2408")
    assert reverse.citation == "bundled note"
    assert reverse.hotfixes[1] == Hotfix(v("1.2408.2.3"), PartialDate(2025, 2), "documented", "kb2")
    undated = merge([[rel("2408", "file", date_basis="unknown")], second]).get("2408")
    assert (undated.released, undated.date_basis) == (PartialDate(2024, 11, 5), "documented")


def test_type_names_are_plain_words():
    from exporter.catalog import _type_name

    assert [_type_name(x) for x in (None, {}, [], "", True, 3, 2.5, b"")] == [
        "null", "a mapping", "a list", "a string", "a boolean", "a number", "a number", "a bytes",
    ]  # fmt: skip


def test_the_current_month_is_the_utc_month():
    from exporter.catalog import current_update_version

    assert current_update_version(dt.datetime(2026, 11, 30, 23, tzinfo=dt.UTC).timestamp()) == "2611"
    assert current_update_version(dt.datetime(2026, 12, 1, 0, tzinfo=dt.UTC).timestamp()) == "2612"


def test_a_hotfix_equal_to_the_merged_base_build_is_dropped():
    first = [rel("2408", "file", build=v("1.2408.0.19"))]
    second = [rel("2408", "bundled", hotfixes=(Hotfix(v("1.2408.0.19")), Hotfix(v("1.2408.1.50"))))]
    assert [str(h.build) for h in merge([first, second]).get("2408").hotfixes] == ["1.2408.1.50"]
