"""The layered configuration: precedence, locks, validation, history, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpusched import config
from cpusched.config import RELATIONS, ConfigError
from cpusched.models import Parameter, ParameterChange, Revision
from cpusched.params import PARAMS, SECTION_ALIASES

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def layers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No parameter from the real environment; config.ini in a temp dir."""
    for key in PARAMS:
        monkeypatch.delenv(config.env_name(key), raising=False)
    path = tmp_path / "config.ini"
    monkeypatch.setenv("CPUSCHED_CONFIG", str(path))
    return path


def stored() -> dict[str, str]:
    return dict(Parameter.objects.values_list("key", "value"))


def problems_of(changes: dict) -> list[config.Problem]:
    with pytest.raises(ConfigError) as caught:
        config.apply(changes, user="tester")
    return caught.value.problems


# -- precedence ---------------------------------------------------------------


def test_a_key_nobody_set_has_its_default() -> None:
    entry = config.effective()["limits.avg_max_usage"]

    assert (entry.value, entry.source, entry.locked) == (30.0, "default", False)


def test_the_database_overrides_the_default() -> None:
    config.apply({"limits.avg_max_usage": "25"})

    entry = config.effective()["limits.avg_max_usage"]

    assert (entry.value, entry.source, entry.locked) == (25.0, "database", False)


def test_the_file_overrides_the_database(layers: Path) -> None:
    config.apply({"limits.avg_max_usage": "25"})
    layers.write_text("[limits]\navg_max_usage = 20\n")

    entry = config.effective()["limits.avg_max_usage"]

    assert (entry.value, entry.source, entry.locked) == (20.0, "file", True)
    assert entry.origin == str(layers)


def test_the_environment_overrides_the_file(
    layers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.apply({"limits.avg_max_usage": "25"})
    layers.write_text("[limits]\navg_max_usage = 20\n")
    monkeypatch.setenv("CPUSCHED_LIMITS_AVG_MAX_USAGE", "15")

    entry = config.effective()["limits.avg_max_usage"]

    assert (entry.value, entry.source, entry.locked) == (15.0, "environment", True)
    assert entry.origin == "CPUSCHED_LIMITS_AVG_MAX_USAGE"


def test_each_layer_only_shadows_the_keys_it_sets(
    layers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.apply({"scheduler.mode": "aggressive"})
    layers.write_text("[server]\nport = 9090\n")
    monkeypatch.setenv("CPUSCHED_SERVER_HOST", "0.0.0.0")

    current = config.effective()

    assert current["scheduler.mode"].source == "database"
    assert current["server.port"].value == 9090
    assert current["server.host"].value == "0.0.0.0"
    assert current["limits.peak_threshold"].source == "default"


def test_the_original_cpu_limits_section_is_read_as_limits(layers: Path) -> None:
    layers.write_text("[cpu_limits]\navg_window_hours = 0.5\npeak_threshold = 90\n")

    snapshot = config.snapshot()

    assert SECTION_ALIASES["cpu_limits"] == "limits"
    assert snapshot["limits.avg_window_hours"] == 0.5
    assert snapshot["limits.peak_threshold"] == 90.0
    assert config.effective()["limits.peak_threshold"].source == "file"


def test_config_ini_values_are_typed(layers: Path) -> None:
    layers.write_text("[scheduler]\nenabled = no\nmode = conservative\n")

    snapshot = config.snapshot()

    assert snapshot["scheduler.enabled"] is False
    assert snapshot["scheduler.mode"] == "conservative"


def test_get_returns_the_effective_typed_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CPUSCHED_SERVER_PORT", "9001")

    assert config.get("server.port") == 9001


def test_get_of_an_unknown_key_names_it() -> None:
    with pytest.raises(ConfigError, match="limits.nope: unknown parameter"):
        config.get("limits.nope")


def test_window_lengths_accept_fractions_of_an_hour() -> None:
    config.apply(
        {"limits.avg_window_hours": "0.05", "limits.peak_window_hours": "0.25"}
    )

    assert config.get("limits.avg_window_hours") == 0.05
    assert config.get("limits.peak_window_hours") == 0.25


# -- locks --------------------------------------------------------------------


def test_a_key_set_by_the_environment_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CPUSCHED_LIMITS_AVG_MAX_USAGE", "15")

    (problem,) = problems_of({"limits.avg_max_usage": "20"})

    assert problem.key == "limits.avg_max_usage"
    assert "environment variable CPUSCHED_LIMITS_AVG_MAX_USAGE" in problem.message
    assert stored() == {}


def test_a_key_set_by_the_file_is_refused_naming_the_file(layers: Path) -> None:
    layers.write_text("[limits]\navg_max_usage = 20\n")

    (problem,) = problems_of({"limits.avg_max_usage": "25"})

    assert problem.message == (
        f"locked: fixed by the config file {layers}; change or remove it there"
    )
    assert stored() == {}


# -- validation -----------------------------------------------------------------


def test_a_wrong_type_names_the_key_and_what_is_allowed() -> None:
    (problem,) = problems_of({"limits.peak_max_duration": "ten"})

    assert str(problem) == (
        "limits.peak_max_duration: 'ten' is refused: "
        "expected an integer from 0 to 604800"
    )


def test_an_out_of_range_value_names_the_range() -> None:
    (problem,) = problems_of({"limits.avg_max_usage": "150"})

    assert problem.message == "expected a number from 0.1 to 100"


def test_a_fraction_is_refused_for_an_integer() -> None:
    (problem,) = problems_of({"server.port": "80.5"})

    assert problem.message == "expected an integer from 1 to 65535"


@pytest.mark.parametrize("raw", ["nan", "inf", "", "1e999"])
def test_non_finite_or_empty_numbers_are_refused(raw: str) -> None:
    (problem,) = problems_of({"limits.avg_max_usage": raw})

    assert problem.message == "expected a number from 0.1 to 100"


def test_a_bad_choice_lists_the_choices() -> None:
    (problem,) = problems_of({"scheduler.mode": "turbo"})

    assert problem.message == "expected one of conservative, balanced, aggressive"


def test_a_bad_boolean_says_true_or_false() -> None:
    (problem,) = problems_of({"scheduler.enabled": "maybe"})

    assert problem.message == "expected true or false"


def test_an_unknown_key_is_refused() -> None:
    (problem,) = problems_of({"limits.avg_max": "20"})

    assert (problem.key, problem.message) == ("limits.avg_max", "unknown parameter")


# One change breaking each relation, with the key the problem is reported on.
RELATION_CASES = [
    ({"limits.avg_min_usage": "40"}, "limits.avg_min_usage"),
    ({"limits.absolute_max_cpu": "4"}, "limits.absolute_max_cpu"),
    ({"limits.peak_threshold": "5"}, "limits.peak_threshold"),
    ({"limits.avg_critical_threshold": "6"}, "limits.avg_critical_threshold"),
    ({"limits.peak_critical_threshold": "200"}, "limits.peak_critical_threshold"),
    ({"scheduler.quota_high_cpu_limit": "50"}, "scheduler.quota_high_cpu_limit"),
    ({"scheduler.quota_medium_cpu_limit": "30"}, "scheduler.quota_medium_cpu_limit"),
    ({"scheduler.emergency_cpu_limit": "40"}, "scheduler.emergency_cpu_limit"),
    ({"limits.peak_window_hours": "0.1"}, "limits.peak_window_hours"),
    (
        {"reservation.min_duration": "120", "reservation.max_duration": "1"},
        "reservation.min_duration",
    ),
    ({"limits.absolute_min_cpu": "29"}, "limits.absolute_min_cpu"),
]


def test_every_relation_has_a_case_breaking_it() -> None:
    assert len(RELATION_CASES) == len(RELATIONS)


@pytest.mark.parametrize("index", range(len(RELATION_CASES)))
def test_each_relation_refuses_a_contradictory_change(index: int) -> None:
    changes, key = RELATION_CASES[index]
    keys, rule = RELATIONS[index]
    typed, _ = config.validate(changes, config.defaults())

    problems = problems_of(changes)

    assert rule({**config.defaults(), **typed}) is not None
    assert [p.key for p in problems] == [key]
    assert key in keys
    assert key in problems[0].message
    assert stored() == {}


def test_the_defaults_satisfy_every_relation() -> None:
    _, problems = config.validate({}, config.defaults())

    assert problems == []


def test_tier_limits_must_be_ordered_high_medium_low_emergency() -> None:
    problems = problems_of(
        {
            "scheduler.quota_high_cpu_limit": "40",
            "scheduler.quota_medium_cpu_limit": "50",
            "scheduler.quota_low_cpu_limit": "60",
            "scheduler.emergency_cpu_limit": "70",
        }
    )

    assert {p.message.split(":")[0] for p in problems} == {"tier limits"}
    assert len(problems) == 3


def test_a_consistent_change_of_several_related_keys_is_accepted() -> None:
    config.apply(
        {
            "scheduler.quota_high_cpu_limit": "90",
            "scheduler.quota_medium_cpu_limit": "80",
            "scheduler.quota_low_cpu_limit": "70",
            "scheduler.emergency_cpu_limit": "65",
        }
    )

    assert config.get("scheduler.emergency_cpu_limit") == 65.0


def test_all_problems_of_one_change_are_reported_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CPUSCHED_SERVER_PORT", "9000")
    before = Revision.current("config")

    problems = problems_of(
        {
            "limits.avg_max_usage": "abc",
            "limits.peak_threshold": "101",
            "limits.bogus": "1",
            "scheduler.emergency_cpu_limit": "50",
            "server.port": "9001",
            "scheduler.mode": "aggressive",
        }
    )

    assert sorted(p.key for p in problems) == [
        "limits.avg_max_usage",
        "limits.bogus",
        "limits.peak_threshold",
        "scheduler.emergency_cpu_limit",
        "server.port",
    ]
    assert stored() == {}
    assert ParameterChange.objects.count() == 0
    assert Revision.current("config") == before


# -- history and revisions ------------------------------------------------------


def test_a_change_is_recorded_with_key_old_new_who_when_and_why() -> None:
    config.apply({"limits.avg_max_usage": "25"}, user="alice", reason="first")
    config.apply({"limits.avg_max_usage": "28"}, user="bob", reason="second")

    newest = ParameterChange.objects.first()

    assert (newest.key, newest.old_value, newest.new_value) == (
        "limits.avg_max_usage",
        "25.0",
        "28.0",
    )
    assert (newest.changed_by, newest.reason) == ("bob", "second")
    assert newest.changed_at is not None
    assert ParameterChange.objects.last().old_value is None


def test_every_accepted_change_bumps_the_revision_once() -> None:
    start = Revision.current("config")

    first = config.apply({"limits.avg_max_usage": "25", "scheduler.mode": "aggressive"})
    second = config.apply({"limits.avg_max_usage": "26"})

    assert (first, second) == (start + 1, start + 2)
    assert config.current_revision() == start + 2


def test_a_change_to_the_same_value_records_nothing() -> None:
    revision = config.apply({"limits.avg_max_usage": "25"})

    again = config.apply({"limits.avg_max_usage": "25.0"})

    assert again == revision
    assert ParameterChange.objects.count() == 1


def test_a_refused_change_does_not_bump_the_revision() -> None:
    before = Revision.current("config")

    problems_of({"limits.avg_max_usage": "0"})

    assert Revision.current("config") == before


# -- rollback ---------------------------------------------------------------------


def test_rollback_restores_the_stored_values_right_after_an_entry() -> None:
    config.apply({"limits.avg_max_usage": "25"})
    first = ParameterChange.objects.first().id
    config.apply({"limits.avg_max_usage": "28", "scheduler.mode": "aggressive"})
    config.apply({"limits.safety_margin": "10"})

    config.rollback(first, user="carol")

    assert stored() == {"limits.avg_max_usage": "25.0"}
    assert config.get("scheduler.mode") == "balanced"


def test_a_rollback_is_recorded_and_can_itself_be_rolled_back() -> None:
    config.apply({"limits.avg_max_usage": "25"})
    first = ParameterChange.objects.first().id
    config.apply({"limits.avg_max_usage": "28"})
    before_rollback = ParameterChange.objects.first().id
    revision = Revision.current("config")

    config.rollback(first, user="carol", reason="too high")
    entry = ParameterChange.objects.first()
    config.rollback(before_rollback)

    assert (entry.old_value, entry.new_value, entry.changed_by) == (
        "28.0",
        "25.0",
        "carol",
    )
    assert entry.reason == "too high"
    assert stored() == {"limits.avg_max_usage": "28.0"}
    assert Revision.current("config") == revision + 2


def test_rollback_to_before_a_reset_stores_the_values_again() -> None:
    config.apply({"limits.avg_max_usage": "25"})
    first = ParameterChange.objects.first().id
    config.reset()

    config.rollback(first)

    assert stored() == {"limits.avg_max_usage": "25.0"}


def test_rollback_to_an_unknown_entry_is_refused() -> None:
    with pytest.raises(ConfigError, match="no such history entry"):
        config.rollback(9999)


def test_rollback_onto_a_key_now_locked_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config.apply({"limits.avg_max_usage": "25"})
    first = ParameterChange.objects.first().id
    config.apply({"limits.avg_max_usage": "28"})
    monkeypatch.setenv("CPUSCHED_LIMITS_AVG_MAX_USAGE", "20")

    with pytest.raises(ConfigError, match="CPUSCHED_LIMITS_AVG_MAX_USAGE"):
        config.rollback(first)

    assert stored() == {"limits.avg_max_usage": "28.0"}


# -- reset ------------------------------------------------------------------------


def test_reset_of_one_key_returns_it_to_its_default() -> None:
    config.apply({"limits.avg_max_usage": "25", "scheduler.mode": "aggressive"})
    revision = Revision.current("config")

    config.reset(["limits.avg_max_usage"], user="dave")

    assert stored() == {"scheduler.mode": "aggressive"}
    assert config.effective()["limits.avg_max_usage"].source == "default"
    entry = ParameterChange.objects.first()
    assert (entry.old_value, entry.new_value, entry.changed_by) == (
        "25.0",
        None,
        "dave",
    )
    assert Revision.current("config") == revision + 1


def test_reset_of_everything_empties_the_database_layer() -> None:
    config.apply({"limits.avg_max_usage": "25", "scheduler.mode": "aggressive"})

    config.reset()

    assert stored() == {}
    assert ParameterChange.objects.filter(new_value=None).count() == 2


def test_a_reset_with_nothing_stored_does_not_bump_the_revision() -> None:
    before = Revision.current("config")

    assert config.reset() == before


def test_a_reset_that_would_contradict_another_value_is_refused() -> None:
    config.apply({"limits.avg_max_usage": "50", "limits.avg_min_usage": "40"})

    with pytest.raises(ConfigError, match="average limits"):
        config.reset(["limits.avg_max_usage"])

    assert stored()["limits.avg_max_usage"] == "50.0"


def test_reset_of_an_unknown_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="limits.nope: unknown parameter"):
        config.reset(["limits.nope"])


# -- export and import ------------------------------------------------------------


def test_an_export_holds_every_value_and_its_source() -> None:
    config.apply({"limits.avg_max_usage": "25"})

    exported = json.loads(json.dumps(config.export()))

    assert exported["format"] == "cpusched-config"
    assert set(exported["values"]) == set(PARAMS)
    assert exported["values"]["limits.avg_max_usage"] == 25.0
    assert exported["sources"]["limits.avg_max_usage"] == "database"


def test_an_export_imports_back_onto_another_machine() -> None:
    config.apply({"limits.avg_max_usage": "25", "scheduler.mode": "aggressive"})
    text = json.dumps(config.export())
    config.reset()

    config.import_values(config.parse_import(text), user="eve")

    assert stored() == {
        "limits.avg_max_usage": "25.0",
        "scheduler.mode": "aggressive",
    }


def test_importing_this_machines_own_export_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CPUSCHED_SERVER_PORT", "9000")
    config.apply({"limits.avg_max_usage": "25"})
    revision = Revision.current("config")

    config.import_values(config.parse_import(json.dumps(config.export())))

    assert Revision.current("config") == revision
    assert ParameterChange.objects.count() == 1


def test_an_import_with_one_bad_key_changes_nothing() -> None:
    config.apply({"limits.avg_max_usage": "25"})
    revision = Revision.current("config")
    text = json.dumps(
        {
            "limits.avg_max_usage": 28,
            "scheduler.mode": "aggressive",
            "limits.peak_threshold": 150,
        }
    )

    with pytest.raises(ConfigError) as caught:
        config.import_values(config.parse_import(text))

    assert [p.key for p in caught.value.problems] == ["limits.peak_threshold"]
    assert stored() == {"limits.avg_max_usage": "25.0"}
    assert ParameterChange.objects.count() == 1
    assert Revision.current("config") == revision


def test_an_import_of_a_contradictory_set_changes_nothing() -> None:
    text = json.dumps({"limits.avg_min_usage": 20, "limits.avg_max_usage": 10})

    with pytest.raises(ConfigError, match="average limits"):
        config.import_values(config.parse_import(text))

    assert stored() == {}


def test_an_import_of_a_different_value_for_a_locked_key_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CPUSCHED_SERVER_PORT", "9000")

    with pytest.raises(ConfigError, match="CPUSCHED_SERVER_PORT"):
        config.import_values({"server.port": 9001, "scheduler.mode": "aggressive"})

    assert stored() == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "file: not valid JSON: Expecting property name"),
        ("[1, 2]", "file: expected a JSON object of key: value pairs"),
        ('"limits"', "file: expected a JSON object of key: value pairs"),
    ],
)
def test_malformed_json_is_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse_import(text)

    assert str(caught.value).startswith(message)


# -- malformed layers -------------------------------------------------------------


def test_a_config_ini_without_section_headers_is_refused_naming_the_file(
    layers: Path,
) -> None:
    layers.write_text("avg_max_usage = 20\n")

    with pytest.raises(ConfigError) as caught:
        config.effective()

    (problem,) = caught.value.problems
    assert problem.key == str(layers)
    assert "malformed config file" in problem.message
    assert "line 1: 'avg_max_usage = 20' comes before any [section]" in (
        problem.message
    )


def test_a_config_ini_with_a_duplicate_key_is_refused(layers: Path) -> None:
    layers.write_text("[limits]\navg_max_usage = 20\navg_max_usage = 25\n")

    with pytest.raises(
        ConfigError, match="line 3: avg_max_usage is set twice in \\[limits\\]"
    ):
        config.effective()


def test_an_unknown_key_in_config_ini_names_the_section_and_option(
    layers: Path,
) -> None:
    layers.write_text("[limits]\navg_max = 20\n[bogus]\nx = 1\n")

    with pytest.raises(ConfigError) as caught:
        config.effective()

    assert [p.key for p in caught.value.problems] == ["limits.avg_max", "bogus.x"]
    assert f"in {layers} [limits] avg_max" in caught.value.problems[0].message


def test_a_bad_value_in_config_ini_says_where_it_was_set(layers: Path) -> None:
    layers.write_text("[limits]\navg_max_usage = lots\n")

    with pytest.raises(ConfigError) as caught:
        config.effective()

    assert str(caught.value) == (
        "limits.avg_max_usage: 'lots' is refused: "
        f"expected a number from 0.1 to 100 (set in {layers})"
    )


def test_a_file_that_breaks_a_rule_between_keys_is_refused_at_load(
    layers: Path,
) -> None:
    layers.write_text("[limits]\navg_min_usage = 50\n")

    with pytest.raises(ConfigError) as caught:
        config.effective()

    problem = caught.value.problems[0]
    assert problem.key == "limits.avg_min_usage"
    assert "must be below limits.avg_max_usage (30.0)" in problem.message
    assert f"limits.avg_min_usage set in {layers}" in problem.message


def test_an_environment_value_that_breaks_a_rule_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CPUSCHED_SCHEDULER_QUOTA_LOW_CPU_LIMIT", "70")

    with pytest.raises(ConfigError, match="CPUSCHED_SCHEDULER_QUOTA_LOW_CPU_LIMIT"):
        config.effective()


def test_a_bad_environment_value_says_where_it_was_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CPUSCHED_SCHEDULER_ENABLED", "perhaps")

    with pytest.raises(ConfigError, match=r"expected true or false \(set in the env"):
        config.effective()
