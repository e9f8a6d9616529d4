"""The servicing policy: every worked example in Microsoft's policy text, and real history."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.catalog import Catalog, Hotfix, PartialDate, Release
from exporter.config import load_bundled_catalog
from exporter.policy import ENDING_SOON, IN_SUPPORT, OUT_OF_SUPPORT, EvaluationError, Policy, evaluate
from exporter.versions import Version, parse_version

POLICY = Policy()


def v(text: str) -> Version:
    return parse_version(text)


def releases(*updates: str) -> Catalog:
    """A catalog of base builds ``1.YYMM.0.1`` (1802-1804 in their legacy form)."""
    legacy = {"1802": "1.0.180302.1", "1803": "1.0.180329.1", "1804": "1.0.180513.1"}
    return Catalog.of(Release(u, build=v(legacy.get(u, f"1.{u}.0.1")), sources=("inline",)) for u in updates)


def build_of(catalog: Catalog, update: str) -> Version:
    return catalog.get(update).build


def supported(catalog: Catalog, policy: Policy = POLICY) -> list[str]:
    return [r.update for r in catalog.releases if evaluate(build_of(catalog, r.update), catalog, policy).in_support]


# ---------------------------------------------------------------- the seed documents' examples


def test_2019_03_example_1805_latest_keeps_1804_and_1803_and_drops_1802():
    """'if the most recently available update version is 1805, and the previous two update packages
    were versions 1804 and 1803, both 1803 and 1804 remain in support. However, 1802 is out of support.'"""
    catalog = releases("1802", "1803", "1804", "1805")
    assert supported(catalog) == ["1803", "1804", "1805"]
    old = evaluate(v("1.0.180302.1"), catalog, POLICY)
    assert (old.update_version, old.versions_behind, old.in_support, old.verdict) == ("1802", 3, False, OUT_OF_SUPPORT)
    assert old.update_path == ("1803", "1804", "1805")
    assert old.superseded_by == "1805"


def test_2019_03_example_1805_without_1804_keeps_1803_and_1802():
    """'if the current release is 1805 and there was no 1804 release, the previous two update
    packages of 1803 and 1802 remain in support.'"""
    catalog = releases("1802", "1803", "1805")
    assert supported(catalog) == ["1802", "1803", "1805"]
    assert evaluate(v("1.0.180302.1"), catalog, POLICY).versions_behind == 2


def test_2019_07_example_1904_keeps_1903_and_1902_and_drops_1901():
    """'if the most recently available update version is 1904, and the previous two update packages
    were versions 1903 and 1902, both 1902 and 1903 remain in support. However, 1901 is out of support.'"""
    catalog = releases("1811", "1901", "1902", "1903", "1904")
    assert supported(catalog) == ["1902", "1903", "1904"]
    ev = evaluate(v("1.1901.0.95"), catalog, POLICY)
    assert (ev.versions_behind, ev.in_support) == (3, False)


def test_2019_07_example_1807_without_1806_keeps_1805_and_1804():
    """'if the current release is 1807 and there was no 1806 release, the previous two update
    packages of 1805 and 1804 remain in support.'"""
    catalog = releases("1803", "1804", "1805", "1807")
    assert supported(catalog) == ["1804", "1805", "1807"]
    assert evaluate(v("1.0.180513.1"), catalog, POLICY).verdict == ENDING_SOON
    assert evaluate(v("1.0.180329.1"), catalog, POLICY).verdict == OUT_OF_SUPPORT


def test_2023_example_2306_2301_2206_in_support_and_2108_out():
    """Policy text 2023-09: N = 2306, N-1 = 2301, N-2 = 2206; 2108 out of support as N-3
    (no 2112 or 2210 release shipped, so months without a release do not count)."""
    catalog = Catalog.of(r for r in load_bundled_catalog() if r.update <= "2306")
    assert supported(catalog)[-3:] == ["2206", "2301", "2306"]
    ev = evaluate(v("1.2108.2.65"), catalog, POLICY)
    assert (ev.versions_behind, ev.in_support) == (3, False)


def test_2024_example_2406_2311_2306_in_support_and_2301_out():
    catalog = Catalog.of(r for r in load_bundled_catalog() if r.update <= "2406")
    assert supported(catalog)[-3:] == ["2306", "2311", "2406"]
    assert not evaluate(v("1.2301.3.97"), catalog, POLICY).in_support


# ---------------------------------------------------------------- verdicts and paths


def test_verdicts_by_position():
    catalog = releases("2406", "2408", "2501", "2506")
    assert evaluate(v("1.2506.0.1"), catalog, POLICY).verdict == IN_SUPPORT
    assert evaluate(v("1.2501.0.1"), catalog, POLICY).verdict == IN_SUPPORT
    assert evaluate(v("1.2408.0.1"), catalog, POLICY).verdict == ENDING_SOON
    assert evaluate(v("1.2406.0.1"), catalog, POLICY).verdict == OUT_OF_SUPPORT


def test_update_path_lists_every_newer_release_because_packages_are_not_cumulative():
    catalog = Catalog.of(load_bundled_catalog())
    ev = evaluate(v("1.2306.4.102"), catalog, POLICY)
    assert ev.update_path == ("2311", "2406", "2408", "2501", "2506", "2601")
    assert ev.versions_behind == 6
    assert ev.next_step.kind == "update" and ev.next_step.update == "2311"
    assert ev.next_step.build == v("1.2311.1.22")


def test_supported_releases_is_configurable():
    catalog = releases("1907", "1908", "1910", "2002")
    n3 = Policy(supported_releases=4)
    assert evaluate(v("1.1907.0.1"), catalog, n3).verdict == ENDING_SOON
    assert evaluate(v("1.1907.0.1"), catalog, POLICY).verdict == OUT_OF_SUPPORT
    n1 = Policy(supported_releases=1)
    assert evaluate(v("1.2002.0.1"), catalog, n1).verdict == ENDING_SOON
    assert evaluate(v("1.1910.0.1"), catalog, n1).verdict == OUT_OF_SUPPORT


def test_out_of_support_since_is_the_release_date_of_the_release_that_took_it_out():
    catalog = Catalog.of(
        [
            Release("2406", build=v("1.2406.0.8"), released=PartialDate(2024, 8)),
            Release("2408", build=v("1.2408.0.19"), released=PartialDate(2024, 11, 5)),
            Release("2501", build=v("1.2501.0.21"), released=PartialDate(2025, 3, 1)),
            Release("2506", build=v("1.2506.0.15"), released=PartialDate(2025, 8, 1)),
            Release("2601", build=v("1.2601.0.4")),
        ]
    )
    # 2406 stays in support through 2408 and 2501 (N-2); 2506, the third newer release, ends it.
    ev = evaluate(v("1.2406.1.23"), catalog, POLICY)
    assert (ev.superseded_by, ev.out_of_support_since) == ("2506", PartialDate(2025, 8, 1))
    undated = evaluate(v("1.2408.1.50"), catalog, POLICY)
    assert (undated.superseded_by, undated.out_of_support_since) == ("2601", None)
    unknown = evaluate(v("1.2501.0.21"), catalog, Policy(supported_releases=1))
    assert (unknown.superseded_by, unknown.out_of_support_since) == ("2506", PartialDate(2025, 8, 1))
    assert evaluate(v("1.2506.0.15"), catalog, POLICY).out_of_support_since is None
    no_date = evaluate(v("1.2506.0.15"), catalog, Policy(supported_releases=1))
    assert (no_date.superseded_by, no_date.out_of_support_since) == ("2601", None)


# ---------------------------------------------------------------- hotfixes


def test_base_build_with_nonzero_third_field_is_not_a_hotfix():
    catalog = Catalog.of(load_bundled_catalog())
    ev = evaluate(v("1.2008.13.88"), catalog, POLICY)
    assert ev.update_version == "2008"
    assert ev.latest_hotfix == v("1.2008.41.161")
    assert ev.latest_hotfix_installed is False
    assert ev.next_step.kind == "hotfix" and ev.next_step.build == v("1.2008.41.161")
    assert len(ev.missing_hotfixes) == 20


def test_1809_hotfix_114_is_the_latest_and_102_is_not():
    catalog = Catalog.of(load_bundled_catalog())
    assert evaluate(v("1.1809.12.114"), catalog, POLICY).latest_hotfix_installed is True
    ev = evaluate(v("1.1809.6.102"), catalog, POLICY)
    assert ev.latest_hotfix_installed is False
    assert [str(h.build) for h in ev.missing_hotfixes] == ["1.1809.12.114"]


def test_latest_hotfix_installed_is_none_when_no_hotfix_is_known():
    catalog = Catalog.of(load_bundled_catalog())
    ev = evaluate(v("1.1811.0.101"), catalog, POLICY)
    assert ev.latest_hotfix is None and ev.latest_hotfix_installed is None
    assert ev.next_step.kind == "update" and ev.next_step.update == "1901"


def test_a_build_above_every_known_hotfix_counts_as_latest():
    catalog = Catalog.of(load_bundled_catalog())
    assert evaluate(v("1.2506.9.99"), catalog, POLICY).latest_hotfix_installed is True


def test_pending_hotfix_date_is_the_oldest_missing_hotfix_with_a_known_date():
    catalog = Catalog.of(
        [
            Release(
                "2506",
                build=v("1.2506.0.15"),
                hotfixes=(
                    Hotfix(v("1.2506.1.10")),
                    Hotfix(v("1.2506.2.24"), PartialDate(2025, 9, 2)),
                    Hotfix(v("1.2506.3.30"), PartialDate(2025, 10, 14)),
                ),
            )
        ]
    )
    assert evaluate(v("1.2506.0.15"), catalog, POLICY).pending_hotfix_released == PartialDate(2025, 9, 2)
    assert evaluate(v("1.2506.2.24"), catalog, POLICY).pending_hotfix_released == PartialDate(2025, 10, 14)
    assert evaluate(v("1.2506.3.30"), catalog, POLICY).pending_hotfix_released is None


def test_legacy_build_older_than_every_release_cannot_be_evaluated():
    with pytest.raises(EvaluationError, match="older than every release"):
        evaluate(v("1.0.171201.1"), Catalog.of(load_bundled_catalog()), POLICY)


# ---------------------------------------------------------------- properties

updates = st.lists(
    st.builds(lambda y, m: f"{y:02d}{m:02d}", st.integers(18, 40), st.integers(1, 12)),
    min_size=1,
    max_size=40,
    unique=True,
)


@given(updates, st.data(), st.integers(1, 6))
def test_versions_behind_counts_newer_releases_and_support_follows_it(all_updates, data, n):
    catalog = releases(*all_updates)
    ordered = sorted(all_updates)
    running = data.draw(st.sampled_from(ordered))
    ev = evaluate(v(f"1.{running}.0.1"), catalog, Policy(supported_releases=n))
    assert ev.versions_behind == len(ordered) - 1 - ordered.index(running)
    assert ev.in_support == (ev.versions_behind < n)
    assert ev.update_path == tuple(ordered[ordered.index(running) + 1 :])
    assert (ev.verdict == ENDING_SOON) == (ev.versions_behind == n - 1)


@given(updates, st.integers(1, 6))
def test_exactly_the_newest_n_releases_are_in_support(all_updates, n):
    catalog = releases(*all_updates)
    assert supported(catalog, Policy(supported_releases=n)) == sorted(all_updates)[-n:]


# ---------------------------------------------------------------- 2023+ additions and exceptions


def ts(year: int, month: int, day: int) -> float:
    import datetime as dt

    return dt.datetime(year, month, day, 12, tzinfo=dt.UTC).timestamp()


def test_2020_n3_exception_window_with_the_real_history():
    """With 2005 released, the temporary N-3 kept 1908 in support until 25 September 2020."""
    import datetime as dt

    from exporter.policy import PolicyException

    catalog = Catalog.of(r for r in load_bundled_catalog() if r.update <= "2005")
    policy = Policy(exceptions=(PolicyException(dt.date(2020, 3, 1), dt.date(2020, 9, 25), 4, "COVID-19"),))
    during, after = policy.at(ts(2020, 9, 1)), policy.at(ts(2020, 10, 1))
    assert during.supported_releases == 4 and during.active_exception.reason == "COVID-19"
    assert after.supported_releases == 3 and after.active_exception is None
    assert evaluate(v("1.1908.51.133"), catalog, during).verdict == ENDING_SOON
    assert evaluate(v("1.1908.51.133"), catalog, after).verdict == OUT_OF_SUPPORT
    assert evaluate(v("1.1907.29.80"), catalog, during).verdict == OUT_OF_SUPPORT
    assert supported(catalog, after)[-3:] == ["1910", "2002", "2005"]
    assert policy.at(ts(2020, 9, 25)).supported_releases == 4  # the last day is included


def test_hotfix_overdue_by_date_and_grace_period():
    catalog = Catalog.of(
        [Release("2506", build=v("1.2506.0.15"), hotfixes=(Hotfix(v("1.2506.2.24"), PartialDate(2025, 9, 2)),))]
    )
    released = PartialDate(2025, 9, 2).timestamp()
    assert evaluate(v("1.2506.0.15"), catalog, POLICY, released + 44 * 86400).hotfix_overdue is False
    assert evaluate(v("1.2506.0.15"), catalog, POLICY, released + 46 * 86400).hotfix_overdue is True
    short = Policy(hotfix_grace_period=7 * 86400)
    assert evaluate(v("1.2506.0.15"), catalog, short, released + 8 * 86400).hotfix_overdue is True
    assert evaluate(v("1.2506.2.24"), catalog, POLICY, released + 99 * 86400).hotfix_overdue is None
    assert evaluate(v("1.2506.0.15"), catalog, POLICY).hotfix_overdue is None  # no clock, no verdict


def test_oem_versions_behind_and_n2():
    from exporter.policy import evaluate_oem

    dell = ("2.4.2411.6", "2.4.2502.3", "2.4.2504.2", "2.4.2508.4")
    assert evaluate_oem("2.4.2508.4", "Dell", dell, 3).versions_behind == 0
    old = evaluate_oem("2.4.2411.6", "Dell", dell, 3)
    assert (old.versions_behind, old.in_support, old.latest) == (3, False, "2.4.2508.4")
    assert evaluate_oem("2.4.2502.3", "Dell", dell, 3).in_support is True
    assert evaluate_oem("2.4.2407.13", "Dell", dell, 3).versions_behind == 4  # older than any listed
    assert evaluate_oem("2.4.10000.1", "Dell", dell, 3).versions_behind == 0  # numeric, not text, order
    assert evaluate_oem("not-a-version", "Dell", dell, 3) is None


# ---------------------------------------------------------------- edges, each on both sides


def test_an_exception_applies_from_its_first_to_its_last_utc_day():
    import datetime as dt

    from exporter.policy import PolicyException

    exception = PolicyException(dt.date(2020, 3, 1), dt.date(2020, 12, 31), 4, "2020")
    policy = Policy(exceptions=(exception,))

    def at(*moment: int) -> Policy:
        return policy.at(dt.datetime(*moment, tzinfo=dt.UTC).timestamp())

    assert at(2020, 2, 29, 23, 59).active_exception is None
    assert at(2020, 2, 29, 23, 59).supported_releases == 3
    assert at(2020, 3, 1, 0, 0).active_exception == exception
    assert at(2020, 3, 1, 0, 0).supported_releases == 4
    assert at(2020, 12, 31, 23, 59).supported_releases == 4
    assert at(2021, 1, 1, 0, 0).supported_releases == 3
    # A policy already under an exception loses it when asked about a day outside it.
    assert at(2020, 6, 1).at(dt.datetime(2021, 6, 1, tzinfo=dt.UTC).timestamp()).active_exception is None


def test_next_step_reads_as_an_operator_would_say_it():
    from exporter.policy import NextStep

    assert str(NextStep("hotfix", "2408", v("1.2408.1.50"))) == "hotfix 1.2408.1.50"
    assert str(NextStep("update", "2501", v("1.2501.0.21"))) == "2501 (1.2501.0.21)"
    assert str(NextStep("update", "2611", None)) == "2611"


def test_oem_evaluations_name_their_family_and_latest_package():
    from exporter.policy import evaluate_oem

    versions = ("2.4.2411.6", "2.4.2502.3", "2.4.2506.1")
    result = evaluate_oem("2.4.2411.6", "Dell", versions, 3)
    assert (result.family, result.versions_behind, result.in_support, result.latest) == ("Dell", 2, True, "2.4.2506.1")
    assert not evaluate_oem("2.4.2411.6", "Dell", versions, 2).in_support
    assert evaluate_oem("banana", "Dell", versions, 3) is None
    assert evaluate_oem("2.4.2411.6", "Dell", (), 3) is None


def test_a_hotfix_is_overdue_only_after_the_whole_grace_period():
    hotfix = Hotfix(v("1.2408.1.50"), PartialDate(2025, 1, 1))
    catalog = Catalog.of([Release("2408", v("1.2408.0.19"), hotfixes=(hotfix,), sources=("bundled",))])
    grace = 45 * 86400
    released = PartialDate(2025, 1, 1).timestamp()
    running = v("1.2408.0.19")
    assert evaluate(running, catalog, Policy(hotfix_grace_period=grace), released + grace).hotfix_overdue is False
    assert evaluate(running, catalog, Policy(hotfix_grace_period=grace), released + grace + 1).hotfix_overdue is True
    step = evaluate(running, catalog, POLICY, released).next_step
    assert (step.kind, step.update, step.build) == ("hotfix", "2408", v("1.2408.1.50"))


def test_ahead_of_catalog_compares_with_sourced_releases_only():
    sourced = Release("2601", v("1.2601.0.4"), sources=("bundled",))
    observed = Release("2611", v("1.2611.0.1"), sources=("observed",))
    both = Catalog.of([sourced, observed])
    assert evaluate(v("1.2611.0.1"), both, POLICY).ahead_of_catalog is True
    assert evaluate(v("1.2601.0.4"), both, POLICY).ahead_of_catalog is False
    assert evaluate(v("1.2611.0.1"), Catalog.of([observed]), POLICY).ahead_of_catalog is True
    assert evaluate(v("1.2601.0.4"), Catalog.of([sourced]), POLICY).ahead_of_catalog is False
