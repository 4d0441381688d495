"""What `mlsvc` prints, as a person (or a CI log) reads it: `--wait` lines in a log and a bar with the message on a
terminal; progress, messages, aliases and metrics in words; rows counted from 1; options with metavars; refusals
in the CLI's own option names; and deleting an aliased version only with `--force`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from mlsvc.cli import app
from mlsvc.client import Client
from tests.servers import REPO, RunningServer, run_cli

CHURN = REPO / "datasources" / "churn.csv"
INTERACTIONS = REPO / "datasources" / "recommendation" / "interactions.csv.gz"
LINE = re.compile(r"^(?P<id>ml-\w+) (?P<status>[A-Z]+) (?P<percent>\d+)% \(\d+ s\)(?:: (?P<message>.*))?$")


@pytest.fixture(scope="module")
def datasource(mlsvc_server: RunningServer) -> str:
    with Client(mlsvc_server.url) as client:
        return client.datasources.wait(client.datasources.create(str(CHURN), name="cli-out"), timeout=120).id


@pytest.fixture(scope="module")
def logged(mlsvc_server: RunningServer, datasource: str) -> dict[str, Any]:
    """`mlsvc models create … --wait` with stderr a pipe, as in CI: the model, and the lines its wait wrote."""
    done = run_cli(
        mlsvc_server,
        *("models", "create", "cli-out", "--datasource", datasource, "--time-budget", "3", "--wait", "--json"),
    )
    assert done.returncode == 0, done.stderr
    return {"model": json.loads(done.stdout), "lines": done.stderr.strip().splitlines()}


def test_wait_writes_plain_lines_to_a_log(logged: dict[str, Any]) -> None:
    model, lines = logged["model"], logged["lines"]
    states = [LINE.match(line) for line in lines]
    assert all(states), lines  # plain lines, no bar drawn with control characters
    assert {s["id"] for s in states if s} == {model["id"]}
    last = states[-1]
    assert last and last["status"] == "COMPLETED" and last["percent"] == "100" and last["message"] == model["message"]
    percents = [int(s["percent"]) for s in states if s]
    assert percents == sorted(percents)
    assert len(lines) <= 16  # a status change, a tenth of progress, or rarely a new message: not a line a poll


def test_wait_on_a_terminal_draws_the_bar_with_the_message(mlsvc_server: RunningServer, datasource: str) -> None:
    done = run_cli(
        mlsvc_server,
        *("models", "create", "cli-out-bar", "--datasource", datasource, "--time-budget", "2", "--wait", "--json"),
        env={"TTY_COMPATIBLE": "1", "COLUMNS": "200"},  # rich takes stderr for a terminal, as a person's would be
    )
    assert done.returncode == 0, done.stderr
    model = json.loads(done.stdout)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stderr)  # what the terminal showed, without its controls
    assert "━" in shown and "100%" in shown and f"{model['id']} COMPLETED" in shown
    assert " ".join(model["message"].split()) in " ".join(shown.split())  # under the bar, wrapped to the width
    assert not any(LINE.match(line) for line in shown.splitlines())


def test_models_list_and_get_read_as_words(mlsvc_server: RunningServer, logged: dict[str, Any]) -> None:
    model = logged["model"]
    auc = f"BinaryAUC {model['metrics']['BinaryAUC']:.4g}"
    listed = run_cli(mlsvc_server, "models", "list", "--name", "cli-out")
    assert listed.returncode == 0, listed.stderr
    header = next(line for line in listed.stdout.splitlines() if "id" in line and "status" in line)
    assert "progress" in header and "message" in header and "metric" in header
    row = listed.stdout
    assert "100%" in row and auc in row and "production" in row and '["production"]' not in row
    assert model["message"].split()[0] in row
    shown = run_cli(mlsvc_server, "models", "get", "cli-out:1")
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"metrics\s+{re.escape(auc)}\s*$", shown.stdout, re.M)  # the selection metric first
    assert re.search(r"^\s+average_precision 0\.\d+\s*$", shown.stdout, re.M)  # then one a line
    assert "{" not in shown.stdout and "progress         100%" in shown.stdout
    assert re.search(r"created_at\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", shown.stdout)


def test_predict_counts_rows_from_one(mlsvc_server: RunningServer, logged: dict[str, Any]) -> None:
    records = json.dumps([{"tenure_months": 2}, {"tenure_months": 40}, {"tenure_months": 70}])
    shown = run_cli(mlsvc_server, "predict", "cli-out", records)
    assert shown.returncode == 0, shown.stderr
    assert re.findall(r"^│ (\d+) ", shown.stdout, re.M) == ["1", "2", "3"]
    assert shown.stdout.splitlines()[0] == f"model {logged['model']['id']} v1"


def test_recommend_has_a_one_line_heading_and_counts_from_one(mlsvc_server: RunningServer, tmp_path: Path) -> None:
    sample = tmp_path / "interactions.csv"
    pd.read_csv(INTERACTIONS, dtype=str, nrows=4000).to_csv(sample, index=False)
    with Client(mlsvc_server.url) as client:
        ds = client.datasources.wait(client.datasources.create(str(sample)), timeout=120)
        created = client.models.create("cli-out-shop", ds, model_type="RECOMMENDATION", time_budget_s=2, k=5)
        model = client.models.wait(created, timeout=180)
    user = pd.read_csv(sample, dtype=str)["user_id"].iloc[0]
    for args, subject in (([user], f"for user {user}"), (["a-stranger"], "for user a-stranger")):
        shown = run_cli(mlsvc_server, "recommend", "cli-out-shop", *args, "--k", "4")
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0] == f"model {model.id} v1, {subject}"  # whole on its line, not wrapped over a narrow table
        assert re.findall(r"^│ (\d+) ", shown.stdout, re.M) == ["1", "2", "3", "4"]
    assert "unknown user" in shown.stdout


def _commands(group: TyperGroup, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            found += _commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


def test_every_option_has_a_metavar_or_is_a_flag() -> None:
    runner = CliRunner()
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    commands = _commands(root)
    assert ("models", "delete") in commands and ("batch", "create") in commands
    for command in commands:
        shown = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert shown.exit_code == 0, shown.output
        options = shown.output[shown.output.index("─ Options ") :]
        typed = [line for line in options.splitlines() if re.search(r"<\w+(\[\w+\])?>", line)]
        assert all("--help" in line for line in typed), (command, typed)  # typer's own option: not ours to name
    create = runner.invoke(app, ["models", "create", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--time-budget\s+SECONDS", create) and re.search(r"--tag\s+KEY=VALUE", create)
    assert re.search(r"--wait\s+Wait", create)  # a flag: no value to name


def test_batch_create_is_refused_in_the_cli_s_own_words(mlsvc_server: RunningServer, datasource: str) -> None:
    neither = run_cli(mlsvc_server, "batch", "create", "cli-out", "out/")
    both = run_cli(mlsvc_server, "batch", "create", "cli-out", "out/", "--datasource", datasource, "--data", "x.csv")
    for refused in (neither, both):
        assert refused.returncode == 2
        assert "--datasource" in refused.stderr and "--data " in refused.stderr and "_id" not in refused.stderr
    row_id = run_cli(mlsvc_server, "batch", "create", "cli-out", "out/", "--datasource", datasource, "--row-id", "x")
    assert row_id.returncode == 2 and "--row-id goes with --data" in row_id.stderr
    budget = run_cli(mlsvc_server, "models", "create", "cli-out", "--datasource", datasource, "--time-budget", "-1")
    assert budget.returncode == 2 and "--time-budget" in budget.stderr and "time_budget_s" not in budget.stderr


def test_deleting_an_aliased_version_needs_force(mlsvc_server: RunningServer, logged: dict[str, Any]) -> None:
    """Last in this module: it deletes the version the others read."""
    assert logged["model"]["aliases"] == ["production"]
    refused = run_cli(mlsvc_server, "models", "delete", "cli-out:1")
    assert refused.returncode == 2 and "production" in refused.stderr
    assert "--force" in refused.stderr and "force=true" not in refused.stderr
    assert "mlsvc models alias cli-out ALIAS VERSION" in refused.stderr
    deleted = run_cli(mlsvc_server, "models", "delete", "cli-out:1", "--force", "--json")
    assert deleted.returncode == 0, deleted.stderr
    gone = json.loads(deleted.stdout)
    assert gone["status"] == "DELETED" and gone["aliases"] == [] and "production" in gone["message"]


def test_missing_values_are_a_datasource_option(mlsvc_server: RunningServer, tmp_path: Path) -> None:
    data = tmp_path / "codes.csv"
    data.write_text("code,label\n" + "".join(f"{'NA' if i % 3 else 'x'},{i % 2}\n" for i in range(60)))
    made = run_cli(mlsvc_server, "datasources", "create", str(data), "--missing-values", "", "--wait", "--json")
    assert made.returncode == 0, made.stderr
    ds = json.loads(made.stdout)
    assert ds["missing_values"] == [] and ds["statistics"]["attributes"]["code"]["missing"] == 0
    tokens = run_cli(mlsvc_server, "datasources", "create", str(data), "--missing-values", "NA,?", "--json")
    assert json.loads(tokens.stdout)["missing_values"] == ["NA", "?"]
