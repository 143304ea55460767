"""``manage.py config``: output, refusals and exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from cpusched import config
from cpusched.management.commands.config import (
    DOCS_END,
    DOCS_START,
    example_ini,
    parameter_table,
)
from cpusched.models import Parameter, ParameterChange
from cpusched.params import PARAMS, by_category

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def layers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in PARAMS:
        monkeypatch.delenv(config.env_name(key), raising=False)
    path = tmp_path / "config.ini"
    monkeypatch.setenv("CPUSCHED_CONFIG", str(path))
    return path


def run(*args: str) -> str:
    out = StringIO()
    call_command("config", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def refusal(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        run(*args)
    return str(caught.value)


def stored() -> dict[str, str]:
    return dict(Parameter.objects.values_list("key", "value"))


def test_get_prints_the_effective_value_alone() -> None:
    assert run("get", "server.port") == "8080\n"


def test_get_with_source_names_the_locking_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CPUSCHED_SERVER_HOST", "0.0.0.0")

    output = run("get", "server.host", "--source")

    assert output == "0.0.0.0\tenvironment (locked by CPUSCHED_SERVER_HOST)\n"


def test_get_of_an_unknown_key_suggests_a_close_one() -> None:
    message = refusal("get", "avg_max_usage")

    assert (
        message
        == "avg_max_usage: unknown parameter; did you mean limits.avg_max_usage?"
    )


def test_set_stores_the_value_and_prints_the_revision() -> None:
    output = run("set", "limits.avg_max_usage", "25", "--reason", "contract")

    assert output == "limits.avg_max_usage = 25.0\nConfiguration revision 1\n"
    change = ParameterChange.objects.get()
    assert change.reason == "contract"
    assert change.changed_by.startswith("shell")


def test_set_accepts_several_pairs_as_one_change() -> None:
    run(
        "set",
        "scheduler.quota_low_cpu_limit",
        "70",
        "scheduler.quota_medium_cpu_limit",
        "80",
    )

    assert stored() == {
        "scheduler.quota_low_cpu_limit": "70.0",
        "scheduler.quota_medium_cpu_limit": "80.0",
    }


def test_set_of_a_restart_parameter_says_so() -> None:
    output = run("set", "server.port", "9000")

    assert "Takes effect after a restart: server.port" in output


def test_a_refused_set_names_the_key_and_what_is_allowed() -> None:
    message = refusal("set", "limits.avg_max_usage", "150")

    assert message == (
        "set refused, nothing stored (1 problem):\n"
        "  limits.avg_max_usage: '150' is refused: expected a number from 0.1 to 100"
    )
    assert stored() == {}


def test_a_refused_set_lists_every_problem() -> None:
    message = refusal(
        "set",
        "limits.avg_max_usage",
        "x",
        "scheduler.emergency_cpu_limit",
        "50",
        "nope.key",
        "1",
    )

    lines = message.splitlines()
    assert lines[0] == "set refused, nothing stored (3 problems):"
    assert {line.split(":")[0].strip() for line in lines[1:]} == {
        "limits.avg_max_usage",
        "scheduler.emergency_cpu_limit",
        "nope.key",
    }


def test_set_of_a_locked_key_says_where_it_is_locked(layers: Path) -> None:
    layers.write_text("[server]\nport = 9000\n")

    message = refusal("set", "server.port", "9001")

    assert f"locked: fixed by the config file {layers}" in message


def test_set_without_a_value_is_refused() -> None:
    assert "no value given" in refusal("set", "server.port")


def test_list_shows_every_key_of_a_category_with_its_source(
    layers: Path,
) -> None:
    layers.write_text("[limits]\npeak_threshold = 90\n")
    run("set", "limits.avg_max_usage", "25")

    lines = run("list", "limits").splitlines()

    assert len(lines) == len(by_category("limits"))
    table = {line.split()[0]: line for line in lines}
    assert table["limits.avg_max_usage"].split()[1:] == ["25.0", "%", "database"]
    assert table["limits.peak_threshold"].endswith(f"file (locked by {layers})")
    assert table["limits.safety_margin"].endswith("default")


def test_list_without_a_category_shows_every_key() -> None:
    assert len(run("list").splitlines()) == len(PARAMS)


def test_list_of_an_unknown_category_lists_the_known_ones() -> None:
    assert "expected one of monitoring, database" in refusal("list", "cpu")


def test_history_lists_changes_newest_first_and_filters_by_key() -> None:
    run("set", "limits.avg_max_usage", "25", "--reason", "first")
    run("set", "scheduler.mode", "aggressive")
    run("set", "limits.avg_max_usage", "28")

    everything = run("history").splitlines()
    one_key = run("history", "--key", "limits.avg_max_usage", "--limit", "1")

    assert len(everything) == 3
    assert everything[0].endswith("limits.avg_max_usage: 25.0 -> 28.0")
    assert everything[2].endswith("limits.avg_max_usage: (default) -> 25.0  (first)")
    assert one_key.count("\n") == 1
    assert "25.0 -> 28.0" in one_key


def test_rollback_restores_an_earlier_state() -> None:
    run("set", "limits.avg_max_usage", "25")
    first = ParameterChange.objects.get().id
    run("set", "limits.avg_max_usage", "28")

    output = run("rollback", str(first))

    assert (
        output == f"Rolled back to history entry #{first}; configuration revision 3\n"
    )
    assert stored() == {"limits.avg_max_usage": "25.0"}


def test_rollback_to_a_missing_entry_is_refused() -> None:
    assert "change: 42 is refused: no such history entry" in refusal("rollback", "42")


def test_reset_of_named_keys_and_of_all() -> None:
    run("set", "limits.avg_max_usage", "25", "scheduler.mode", "aggressive")

    run("reset", "limits.avg_max_usage")
    remaining = stored()
    run("reset", "--all")

    assert remaining == {"scheduler.mode": "aggressive"}
    assert stored() == {}


def test_reset_needs_keys_or_all_but_not_both() -> None:
    assert "Give the keys to reset, or --all" in refusal("reset")
    assert "Give the keys to reset, or --all" in refusal(
        "reset", "server.port", "--all"
    )


def test_export_and_import_round_trip_through_a_file(tmp_path: Path) -> None:
    run("set", "limits.avg_max_usage", "25")
    target = tmp_path / "export.json"
    run("export", str(target))
    run("reset", "--all")

    output = run("import", str(target))

    assert json.loads(target.read_text())["values"]["limits.avg_max_usage"] == 25.0
    assert output == "Imported; configuration revision 3\n"
    assert stored() == {"limits.avg_max_usage": "25.0"}


def test_export_without_a_file_prints_json() -> None:
    assert json.loads(run("export"))["format"] == "cpusched-config"


def test_an_import_with_one_bad_key_changes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_text(json.dumps({"limits.avg_max_usage": 25, "server.port": 0}))

    message = refusal("import", str(source))

    assert "server.port: 0 is refused: expected an integer from 1 to 65535" in message
    assert stored() == {}


def test_a_malformed_or_missing_import_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{")

    assert "file: not valid JSON" in refusal("import", str(broken))
    assert "Cannot read" in refusal("import", str(tmp_path / "missing.json"))


def test_a_malformed_config_ini_is_reported_by_every_action(layers: Path) -> None:
    layers.write_text("port = 1\n")

    message = refusal("list")

    assert f"{layers}: malformed config file: line 1" in message


# -- the documentation table ---------------------------------------------------------


def test_the_docs_table_lists_every_parameter() -> None:
    table = parameter_table()

    for key in PARAMS:
        assert f"| `{key}` |" in table


def test_the_configuration_docs_hold_the_current_table() -> None:
    document = (ROOT / "docs" / "configuration.md").read_text()

    start = document.index(DOCS_START) + len(DOCS_START)
    end = document.index(DOCS_END)

    assert document[start:end].strip() == parameter_table().strip(), (
        "docs/configuration.md is stale: run "
        "`manage.py config docs --update docs/configuration.md`"
    )


def test_docs_update_rewrites_only_the_table(tmp_path: Path) -> None:
    target = tmp_path / "doc.md"
    target.write_text(f"# Title\n\n{DOCS_START}\nold\n{DOCS_END}\n\nAfter.\n")

    call_command("config", "docs", "--update", str(target), stderr=StringIO())

    text = target.read_text()
    assert text.startswith("# Title\n\n")
    assert text.endswith(f"{DOCS_END}\n\nAfter.\n")
    assert "\nold\n" not in text
    assert "| `limits.avg_max_usage` |" in text


def test_the_example_config_ini_is_current() -> None:
    shipped = (ROOT / "deploy" / "config.ini.example").read_text()

    assert shipped == example_ini(), (
        "deploy/config.ini.example is stale: run `manage.py config docs "
        "--format ini > deploy/config.ini.example`"
    )


def test_the_example_config_ini_sets_nothing_until_uncommented(
    layers: Path,
) -> None:
    layers.write_text(example_ini())
    untouched = config.effective()
    layers.write_text(re.sub(r"^#(\w)", r"\1", example_ini(), flags=re.M))

    uncommented = config.read_file()

    assert {e.source for e in untouched.values()} == {"default"}
    assert set(uncommented) == set(PARAMS)
    assert config.snapshot() == config.defaults()


# -- exit codes through a real process ------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated throwaway data directory for ``manage.py`` processes."""
    path = tmp_path_factory.mktemp("command-data")
    manage("migrate", "--verbosity", "0", data=path, check=True)
    return path


def manage(*args: str, data: Path, check: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPUSCHED_")} | {
        "CPUSCHED_DATA_DIR": str(data),
        "CPUSCHED_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


@pytest.mark.django_db(transaction=False)
def test_the_command_exits_zero_on_success_and_one_on_refusal(data_dir: Path) -> None:
    accepted = manage("config", "set", "limits.avg_max_usage", "25", data=data_dir)
    refused = manage("config", "set", "limits.avg_max_usage", "500", data=data_dir)
    value = manage("config", "get", "limits.avg_max_usage", data=data_dir)

    assert accepted.returncode == 0, accepted.stderr
    assert refused.returncode == 1
    assert "limits.avg_max_usage: '500' is refused" in refused.stderr
    assert value.stdout == "25.0\n"


@pytest.mark.django_db(transaction=False)
def test_an_unknown_action_is_a_usage_error(data_dir: Path) -> None:
    result = manage("config", "frobnicate", data=data_dir)

    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr
