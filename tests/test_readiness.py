"""Update readiness as a pure function: what blocks a stamp's next package, and what does not."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from exporter.health import Health, failed
from exporter.policy import NextStep
from exporter.readiness import INSTALLING_BELIEVED_FOR, REASONS, assess, installing
from exporter.report import AvailableUpdate, Observation
from exporter.runs import UpdateRun
from exporter.versions import parse_version

NOW = 1_790_000_000.0
HEALTHY = Health(listed=73)  # the recorded 2020 list: 73 alerts, every one closed
NEXT_UPDATE = NextStep("update", "2601", parse_version("1.2601.0.4"))
NEXT_HOTFIX = NextStep("hotfix", "2506", parse_version("1.2506.3.30"))


def observation(**kwargs: object) -> Observation:
    """A stamp on 2506 with its latest hotfix, offered 2601 (downloaded, Ready), as the demo's stamps."""
    values: dict[str, object] = {
        "version": parse_version("1.2506.3.30"),
        "oem_version": "2.4.2411.6",
        "collected_at": NOW - 60,
        "update_state": "UpdateAvailable",
        "updates": (
            AvailableUpdate("Microsoft1.2506.3.30", "1.2506.3.30", "Infrastructure", "Installed"),
            AvailableUpdate(
                "Microsoft1.2601.0.4",
                "1.2601.0.4",
                "Infrastructure",
                "Ready",
                min_version="1.2506.0.15",
                min_oem_version="2.1.0.0",
            ),
            AvailableUpdate("OEM2.4.2502.3", "2.4.2502.3", "OEM", "Ready"),
        ),
        "health": HEALTHY,
    }
    values.update(kwargs)
    return Observation(**values)  # type: ignore[arg-type]


def offered(state: str = "Ready", **kwargs: str) -> tuple[AvailableUpdate, ...]:
    return (
        AvailableUpdate("Microsoft1.2506.3.30", "1.2506.3.30", "Infrastructure", "Installed"),
        AvailableUpdate("Microsoft1.2601.0.4", "1.2601.0.4", "Infrastructure", state, **kwargs),  # type: ignore[arg-type]
    )


def test_a_stamp_with_nothing_against_it_is_ready():
    result = assess(observation(), NEXT_UPDATE, HEALTHY, NOW)
    assert (result.ready, result.blocked_by, result.in_progress) == (True, (), False)
    assert result.package == "2601 (1.2601.0.4)" and result.listed == "1.2601.0.4, Ready"


def test_nothing_to_install_has_no_readiness_but_still_says_whether_it_installs():
    result = assess(observation(update_state="UpdateInProgress"), None, HEALTHY, NOW)
    assert (result.ready, result.blocked_by, result.package, result.in_progress) == (None, (), None, True)


def test_an_active_critical_alert_blocks_and_is_named():
    health = Health(critical=2, warning=1, titles=(("critical", "Infrastructure role is unhealthy"),))
    result = assess(observation(health=health), NEXT_UPDATE, health, NOW)
    assert (result.ready, result.blocked_by) == (False, ("critical_alerts",))
    assert result.why == ("2 critical alerts active: Infrastructure role is unhealthy",)


def test_warning_alerts_alone_do_not_block():
    health = Health(warning=4, titles=(("warning", "Pending external certificate expiration"),))
    assert assess(observation(), NEXT_UPDATE, health, NOW).ready is True


def test_an_oem_package_older_than_the_update_needs_blocks_it():
    obs = observation(oem_version="2.0.1908.0", updates=offered(min_oem_version="2.1.0.0"))
    result = assess(obs, NEXT_UPDATE, HEALTHY, NOW)
    assert (result.ready, result.blocked_by) == (False, ("oem_prerequisite",))
    assert result.why == ("needs OEM package 2.1.0.0 or later (the stamp runs 2.0.1908.0)",)


def test_oem_versions_are_never_compared_with_microsoft_builds():
    # A Microsoft build as minOemVersionRequired would be "newer" than any OEM package: it is
    # still compared as an OEM version, field by field, with the stamp's OEM version only.
    obs = observation(
        oem_version="2.4.2411.6", updates=offered(min_oem_version="2.4.2411.6", min_version="1.2506.0.15")
    )
    assert assess(obs, NEXT_UPDATE, HEALTHY, NOW).ready is True
    # An unreadable OEM version on either side is no blocker: unknown is not "too old".
    for stamp_oem, needed in (("Dell 14G", "2.1.0.0"), ("2.4.2411.6", "see vendor"), ("2.4.\u00b2", "2.1.0.0")):
        obs = observation(oem_version=stamp_oem, updates=offered(min_oem_version=needed))
        assert "oem_prerequisite" not in assess(obs, NEXT_UPDATE, HEALTHY, NOW).blocked_by


def test_a_build_the_update_must_be_installed_on_blocks_it():
    obs = observation(updates=offered(min_version="1.2506.4.2"))
    result = assess(obs, NEXT_UPDATE, HEALTHY, NOW)
    assert result.blocked_by == ("update_prerequisite",)
    assert "1.2506.4.2" in result.why[0] and "1.2506.3.30" in result.why[0]
    assert assess(observation(updates=offered("HasPrerequisite")), NEXT_UPDATE, HEALTHY, NOW).blocked_by == (
        "update_prerequisite",
    )


def test_a_package_not_on_the_stamp_or_still_downloading_is_not_downloaded():
    missing = observation(updates=offered()[:1])
    assert assess(missing, NEXT_UPDATE, HEALTHY, NOW).blocked_by == ("not_downloaded",)
    for state in ("Downloading", "DownloadFailed"):
        result = assess(observation(updates=offered(state)), NEXT_UPDATE, HEALTHY, NOW)
        assert result.blocked_by == ("not_downloaded",), state
        assert state in result.why[0]


def test_the_pending_hotfix_is_the_package_when_it_is_the_next_step():
    obs = observation(
        version=parse_version("1.2506.1.2"),
        updates=(
            AvailableUpdate("Microsoft1.2506.1.2", "1.2506.1.2", "Infrastructure", "Installed"),
            AvailableUpdate("Microsoft1.2506.3.30", "1.2506.3.30", "Infrastructure", "Ready"),
            AvailableUpdate("Microsoft1.2601.0.4", "1.2601.0.4", "Infrastructure", "Downloading"),
        ),
    )
    result = assess(obs, NEXT_HOTFIX, HEALTHY, NOW)
    assert (result.ready, result.package, result.listed) == (True, "hotfix 1.2506.3.30", "1.2506.3.30, Ready")
    # An older hotfix than the latest is not the package: the latest is not on the stamp.
    older = observation(version=parse_version("1.2506.0.15"), updates=offered()[:0])
    assert assess(older, NEXT_HOTFIX, HEALTHY, NOW).blocked_by == ("not_downloaded",)


def test_an_installing_stamp_is_in_progress_and_blocked_by_it():
    for kwargs in (
        {"update_state": "UpdateInProgress"},
        {"updates": offered("Installing")},
        {"runs": (UpdateRun("1.2601.0.4", "InProgress", NOW - 3600, 3600.0),)},
    ):
        result = assess(observation(**kwargs), NEXT_UPDATE, HEALTHY, NOW)
        assert result.in_progress, kwargs
        assert result.blocked_by == ("update_in_progress",), kwargs


def test_a_package_being_prepared_is_under_way_but_not_installing():
    result = assess(observation(updates=offered("Preparing")), NEXT_UPDATE, HEALTHY, NOW)
    assert (result.in_progress, result.blocked_by) == (False, ("update_in_progress",))


def test_an_update_seen_installing_a_day_ago_is_no_longer_believed():
    stale = observation(update_state="UpdateInProgress", collected_at=NOW - INSTALLING_BELIEVED_FOR - 1)
    fresh = observation(update_state="UpdateInProgress", collected_at=NOW - INSTALLING_BELIEVED_FOR + 60)
    assert not installing(stale, NOW) and installing(fresh, NOW)


def test_a_failed_run_of_a_build_not_installed_blocks_until_it_succeeds():
    failed_run = UpdateRun("1.2601.0.4", "Failed", None, 0.0, "Update is blocked due to health check failure", "x")
    obs = observation(update_state="UpdateFailed", updates=offered("PreparationFailed"), runs=(failed_run,))
    result = assess(obs, NEXT_UPDATE, HEALTHY, NOW)
    assert result.blocked_by == ("failed_run",)
    assert "Update is blocked due to health check failure" in result.why[0]
    # A failed run of a build the stamp has since installed is history, not a blocker.
    old = UpdateRun("1.2506.3.30", "Failed", NOW - 86400 * 30, 600.0, "step", "x")
    done = UpdateRun("1.2506.3.30", "Succeeded", NOW - 86400 * 29, 600.0)
    assert assess(observation(runs=(old, done)), NEXT_UPDATE, HEALTHY, NOW).ready is True
    assert assess(observation(runs=(old,)), NEXT_UPDATE, HEALTHY, NOW).ready is True


def test_unread_alerts_make_readiness_unknown_unless_something_else_blocks():
    result = assess(observation(), NEXT_UPDATE, failed("http", "alerts answered HTTP 404"), NOW)
    assert (result.ready, result.blocked_by) == (None, ())
    assert "404" in (result.unknown or "")
    assert assess(observation(), NEXT_UPDATE, None, NOW).ready is None
    blocked = assess(observation(updates=offered("Downloading")), NEXT_UPDATE, None, NOW)
    assert (blocked.ready, blocked.blocked_by) == (False, ("not_downloaded",))


def test_every_reason_at_once_is_told_in_order():
    health = Health(critical=1)
    obs = observation(
        oem_version="1.0.0.0",
        update_state="UpdateInProgress",
        updates=offered("DownloadFailed", min_version="1.2506.9.9", min_oem_version="2.1.0.0"),
        runs=(UpdateRun("1.2601.0.4", "Failed", NOW - 7200, 60.0, "step", "x"),),
    )
    result = assess(obs, NEXT_UPDATE, health, NOW)
    assert result.blocked_by == REASONS
    assert len(result.why) == len(REASONS) and result.ready is False


STATES = st.sampled_from(
    ["Ready", "Downloading", "Installing", "Installed", "PreparationFailed", "HasPrerequisite", "Preparing", "\ud800"]
)


@given(
    state=STATES,
    location=st.sampled_from(["UpdateAvailable", "UpdateInProgress", "UpdateFailed", None, "Unknown"]),
    critical=st.integers(0, 3),
    health_known=st.booleans(),
    oem=st.sampled_from(["2.4.2411.6", "1.0", "", "x", None]),
    min_oem=st.sampled_from(["2.1.0.0", "9.9.9.9", None, "\x1b[2J"]),
    min_version=st.sampled_from(["1.2506.0.15", "1.2601.0.4", None, "junk"]),
    step=st.sampled_from([NEXT_UPDATE, NEXT_HOTFIX, None]),
)
def test_readiness_is_consistent_whatever_the_stamp_says(
    state, location, critical, health_known, oem, min_oem, min_version, step
):
    health = Health(critical=critical) if health_known else failed("timeout", "request timed out")
    obs = observation(
        oem_version=oem, update_state=location, updates=offered(state, min_version=min_version, min_oem_version=min_oem)
    )
    result = assess(obs, step, health, NOW)
    assert set(result.blocked_by) <= set(REASONS) and len(result.why) == len(result.blocked_by)
    assert list(result.blocked_by) == sorted(result.blocked_by, key=REASONS.index)
    if step is None:
        assert result.ready is None and not result.blocked_by
    elif result.blocked_by:
        assert result.ready is False
    else:
        assert result.ready is (True if health_known else None)
    assert ("critical_alerts" in result.blocked_by) == (step is not None and health_known and critical > 0)
    assert ("update_in_progress" in result.blocked_by) >= (step is not None and result.in_progress)
