"""Build numbers: parsing, canonical form, ordering, and clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.versions import Version, VersionError, parse_update_version, parse_version


def test_modern_build_fields_and_update_version():
    v = parse_version("1.2408.1.50")
    assert v == Version(1, 2408, 1, 50)
    assert v.update_version == "2408"
    assert not v.is_legacy
    assert str(v) == "1.2408.1.50"


def test_leading_zeros_are_accepted_and_normalised():
    assert parse_version("1.2406.0.08") == parse_version("1.2406.0.8")
    assert str(parse_version("1.2406.0.08")) == "1.2406.0.8"


def test_legacy_build_has_no_update_version_of_its_own():
    v = parse_version("1.0.180302.1")
    assert v.is_legacy
    assert v.update_version is None


def test_legacy_builds_order_before_modern_ones():
    assert parse_version("1.0.180513.1") < parse_version("1.1805.1.47")


def test_fields_compare_as_numbers_not_text():
    assert parse_version("1.2008.13.88") > parse_version("1.2008.9.200")
    assert parse_version("1.1809.12.114") > parse_version("1.1809.6.102")


def test_surrounding_whitespace_is_ignored():
    assert parse_version("  1.2501.0.21\n") == Version(1, 2501, 0, 21)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("1.2408.1", "four dot-separated numbers"),
        ("1.2408.1.50.7", "four dot-separated numbers"),
        ("v1.2408.1.50", "four dot-separated numbers"),
        ("1.2408.x.50", "four dot-separated numbers"),
        ("1.2408.-1.50", "four dot-separated numbers"),
        ("", "four dot-separated numbers"),
        ("1.2413.0.1", "not a YYMM release number"),
        ("1.2400.0.1", "not a YYMM release number"),
        ("1.24.0.1", "not a YYMM release number"),
        ("1.0.181399.1", "YYMMDD"),
        ("1.0.12.1", "YYMMDD"),
        ("1.２４０８.1.50", "four dot-separated numbers"),
    ],
)
def test_invalid_builds_are_rejected_with_the_value_named(value, fragment):
    with pytest.raises(VersionError) as info:
        parse_version(value)
    assert fragment in str(info.value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", [1.2408, 12408, None, ["1.2408.1.50"]])
def test_non_strings_are_rejected(value):
    with pytest.raises(VersionError, match="must be a string"):
        parse_version(value)


def test_update_versions():
    assert parse_update_version("2408") == "2408"
    assert parse_update_version(2408) == "2408"
    for bad in ("24080", "2413", "abcd", True, None, 24.08):
        with pytest.raises(VersionError):
            parse_update_version(bad)


yymm = st.builds(lambda y, m: y * 100 + m, st.integers(16, 99), st.integers(1, 12))
modern = st.builds(Version, st.integers(0, 9), yymm, st.integers(0, 999), st.integers(0, 99999))
legacy = st.builds(
    Version,
    st.just(1),
    st.just(0),
    st.builds(lambda ym, d: ym * 100 + d, yymm, st.integers(1, 31)),
    st.integers(0, 999),
)
versions = st.one_of(modern, legacy)


@given(versions)
def test_round_trip_through_text(v):
    assert parse_version(str(v)) == v


@given(versions, st.integers(1, 3))
def test_zero_padding_does_not_change_the_value(v, pad):
    padded = ".".join(f"{field:0{len(str(field)) + pad}d}" for field in (v.major, v.minor, v.patch, v.build))
    assert parse_version(padded) == v


@given(versions, versions)
def test_order_is_the_order_of_the_numeric_fields(a, b):
    fields = lambda v: (v.major, v.minor, v.patch, v.build)  # noqa: E731
    assert (a < b) == (fields(a) < fields(b))
    assert (a == b) == (fields(a) == fields(b))


@given(modern)
def test_update_version_is_the_zero_padded_second_field(v):
    assert v.update_version == f"{v.minor:04d}"
    assert parse_update_version(v.update_version) == v.update_version


@given(st.text(max_size=30))
def test_arbitrary_text_either_parses_or_raises_version_error(text):
    try:
        v = parse_version(text)
    except VersionError:
        return
    assert parse_version(str(v)) == v


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("2.4", (2, 4)),
        (" 2.4.2411.6 ", (2, 4, 2411, 6)),
        ("1.2.3.4.5.6", (1, 2, 3, 4, 5, 6)),
        ("1.123456789", (1, 123456789)),
        ("2", None),
        ("1.2.3.4.5.6.7", None),
        ("1.1234567890", None),
        ("2.x", None),
        ("2..4", None),
    ],
)
def test_oem_versions_are_two_to_six_numbers_of_up_to_nine_digits(text, key):
    from exporter.versions import oem_key

    assert oem_key(text) == key


def test_legacy_hotfix_days_run_from_1_to_31():
    assert str(parse_version("1.0.180531.1")) == "1.0.180531.1"
    for bad in ("1.0.180532.1", "1.0.180500.1"):
        with pytest.raises(VersionError):
            parse_version(bad)


@pytest.mark.parametrize("value", [True, 2.5, None, ["2408"]])
def test_an_update_version_must_be_text_or_a_whole_number(value):
    from exporter.versions import parse_update_version

    with pytest.raises(VersionError) as caught:
        parse_update_version(value)
    assert str(caught.value) == f'update version {value!r} must be a YYMM string such as "2408"'


def test_update_versions_run_from_1601_to_9912():
    from exporter.versions import parse_update_version

    assert parse_update_version("1601") == "1601"
    assert parse_update_version("9912") == "9912"
    for bad in ("1512", "9913", "2400", "2413"):
        with pytest.raises(VersionError):
            parse_update_version(bad)
