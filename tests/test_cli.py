"""The `hub` CLI: subcommands, --help everywhere, one-line errors with non-zero exits."""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows import cli
from flows.cli import build_parser, main

COMMANDS = [["run"], ["migrate"], ["query"], ["serve"], ["report"], ["schema", "export"], ["config", "show"], ["config", "check"]]


def hub(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_subcommand_has_help_and_global_options(cmd, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*cmd, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--config", "--kafka", "--clickhouse"):
        assert opt in out


def test_unknown_option_is_one_line_usage_error():
    r = hub("query", "--bogus")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unrecognized arguments: --bogus" in r.stderr


@pytest.mark.parametrize("args, env, expected", [
    (["query", "--config", "/nonexistent/hub.toml", "SELECT 1"], {}, "cannot read config file /nonexistent/hub.toml"),
    (["config", "check"], {"HUB_KAFKA__BATCH_SIZE": "lots"}, "kafka.batch_size"),
    (["config", "check"], {"HUB_WINDOWS__ALLOWED_LATENESS_S": "-1"}, "windows.allowed_lateness_s: expected >= 0, got -1"),
    (["query", "--clickhouse", "http://127.0.0.1:9", "SELECT 1"], {}, "cannot connect to ClickHouse at http://127.0.0.1:9"),
    (["run", "--kafka", "127.0.0.1:9", "--clickhouse", "chdb://{tmp}/s"], {"HUB_KAFKA__CONNECT_TIMEOUT_S": "2"},
     "Kafka at 127.0.0.1:9 did not answer"),
    (["run", "--input", "/nonexistent.jsonl", "--clickhouse", "chdb://{tmp}/s"], {}, "input file /nonexistent.jsonl does not exist"),
    (["run", "--events", "200000000", "--clickhouse", "chdb://{tmp}/s"], {}, "spans 46.3 days of event time"),
    (["migrate", "--clickhouse", "chdb://{tmp}/fresh"], {"HUB_CLICKHOUSE__DATABASE": "bad`name"},
     "cannot use database 'bad`name'"),
])
def test_operator_mistakes_are_one_line_errors(tmp_path, args, env, expected):
    r = hub(*[a.replace("{tmp}", str(tmp_path)) for a in args], env=env)
    assert r.returncode == 1
    assert expected in r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


def test_query_formats_and_bad_sql(chdb_dsn, capsys):
    assert main(["migrate", "--clickhouse", chdb_dsn]) == 0
    capsys.readouterr()
    assert main(["query", "--clickhouse", chdb_dsn, "--format", "jsonl", "SELECT 1 AS a, 'x' AS b"]) == 0
    assert json.loads(capsys.readouterr().out) == {"a": 1, "b": "x"}
    assert main(["query", "--clickhouse", chdb_dsn, "--format", "csv", "SELECT 1 AS a"]) == 0
    assert capsys.readouterr().out.splitlines() == ["a", "1"]
    assert main(["query", "--clickhouse", chdb_dsn, "SELECT 42 AS answer"]) == 0
    assert "answer" in capsys.readouterr().out
    assert main(["query", "--clickhouse", chdb_dsn, "SELEC 1"]) == 1
    assert "ClickHouse rejected the query" in capsys.readouterr().err
    for report in ("latency", "cost", "errors"):
        assert main(["query", "--clickhouse", chdb_dsn, "--report", report]) == 0


def test_migrate_status_on_a_missing_store_creates_nothing(tmp_path, capsys):
    store = tmp_path / "nowhere" / "store"
    assert main(["migrate", "--status", "--clickhouse", f"chdb://{store}"]) == 0
    assert "pending" in capsys.readouterr().out and not store.exists() and not store.parent.exists()


def test_query_is_read_only(chdb_dsn, capsys):
    assert main(["migrate", "--clickhouse", chdb_dsn]) == 0
    for sql in ("DROP TABLE events", "INSERT INTO late_events (event_id) VALUES ('x')", "TRUNCATE TABLE dead_letters"):
        assert main(["query", "--clickhouse", chdb_dsn, sql]) == 1
        assert "readonly" in capsys.readouterr().err
    assert main(["query", "--clickhouse", chdb_dsn, "--format", "csv", "SELECT count() FROM events"]) == 0
    assert capsys.readouterr().out.splitlines() == ["count()", "0"]


def test_a_password_in_the_dsn_is_refused_and_never_shown(capsys):
    assert main(["config", "check", "--clickhouse", "http://bob:s3cret@localhost:8123"]) == 1
    err = capsys.readouterr().err
    assert "HUB_CLICKHOUSE__PASSWORD" in err and "s3cret" not in err and "\n" not in err.strip()
    assert main(["config", "check", "--clickhouse", "http://bob@localhost:8123"]) == 0  # a user name is fine


def test_config_show_masks_secrets(capsys, monkeypatch):
    monkeypatch.setenv("HUB_CLICKHOUSE__PASSWORD", "hunter2")
    assert main(["config", "show", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["clickhouse"]["password"] == "***"
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "[kafka.topics]" in out


def installed_hub(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a shell line with the installed `hub` console script first on PATH and HUB_* only from env."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**base, **env})


@pytest.mark.parametrize("env", [
    {},
    {"HUB_CLICKHOUSE__PASSWORD": "hunter2", "HUB_KAFKA__SASL_PASSWORD": "s3cret",
     "HUB_KAFKA__CLIENT_CONFIG__SSL_KEY_PASSWORD": "keypw"},
], ids=["no-secrets", "secrets-in-env"])
def test_config_show_output_passes_config_check(tmp_path, env):
    r = installed_hub("hub config show > c.toml && hub config check --config c.toml", tmp_path, env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "config ok\n" and r.stderr == ""
    shown = (tmp_path / "c.toml").read_text()
    assert "null" not in shown
    for secret in env.values():
        assert secret not in shown
    if env:
        assert '# clickhouse.password = "***"' in shown and '# kafka.sasl_password = "***"' in shown


def test_version_is_the_installed_package_version(tmp_path):
    r = installed_hub("hub --version", tmp_path, {})
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"hub {importlib.metadata.version('llm-analytics-hub')}\n"


def test_version_without_installed_package_is_one_line_error(monkeypatch, capsys):
    monkeypatch.setattr(cli, "DISTRIBUTION", "llm-analytics-hub-not-installed")
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert "is not installed" in err and err.count("\n") == 1


def test_migrate_status_lists_pending_then_applied(chdb_dsn, capsys):
    assert main(["migrate", "--status", "--clickhouse", chdb_dsn]) == 0
    assert "pending" in capsys.readouterr().out
    assert main(["migrate", "--clickhouse", chdb_dsn]) == 0
    assert main(["migrate", "--status", "--clickhouse", chdb_dsn]) == 0
    out = capsys.readouterr().out
    assert "pending" not in out and "0001_core  applied" in out



def test_migrate_status_shows_first_release_records_until_restamped(chdb_dsn, capsys):
    from contextlib import closing
    from pathlib import Path

    from config.settings import ClickHouseSettings, RetentionSettings
    from connectors.clickhouse import connect
    from connectors.migrations import migrate

    with closing(connect(ClickHouseSettings(dsn=chdb_dsn))) as client:
        migrate(client, RetentionSettings(), Path(__file__).parent / "data" / "migrations_v1")
    assert main(["migrate", "--status", "--clickhouse", chdb_dsn]) == 0
    assert "0002_metrics  applied (as an earlier, equivalent text" in capsys.readouterr().out
    assert main(["migrate", "--clickhouse", chdb_dsn]) == 0
    assert main(["migrate", "--status", "--clickhouse", chdb_dsn]) == 0
    out = capsys.readouterr().out
    ran = out.splitlines()[0]  # only migrations newer than the first release run; the others are re-stamped
    assert ran.startswith("applied ") and not any(f"000{i}_" in ran for i in range(1, 5)), ran
    assert "0002_metrics  applied\n" in out and "earlier" not in out


def test_run_reads_stdin(tmp_path):
    import time as _time

    now = int(_time.time() * 1000) - 120_000
    lines = "\n".join(json.dumps({"event_type": "telemetry.request", "event_id": f"s{i}", "event_time": now + i,
                                  "source": "telemetry", "payload": {"model": "m", "latency_ms": 10 + i}})
                      for i in range(20)) + "\nnot json\n"
    dsn = f"chdb://{tmp_path}/store"
    r = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--input", "-", "--clickhouse", dsn],
                       input=lines, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "20 events" in r.stderr and "1 dead letters" in r.stderr
    out = hub("query", "--clickhouse", dsn, "--format", "csv",
              "SELECT (SELECT count() FROM events), (SELECT count() FROM dead_letters)")
    assert out.stdout.splitlines()[1] == "20,1"


def test_store_in_use_by_a_running_worker_is_named(tmp_path):
    from connectors.clickhouse import _locked_by_other_process
    from tests.helpers import HubProcess, wait_for

    store = tmp_path / "store"
    # Without live reads (tests/test_live.py covers them) the store is closed to other processes.
    worker = HubProcess(["--clickhouse", f"chdb://{store}"], {"HUB_CLICKHOUSE__LIVE": "false"},
                        tmp_path / "run.log").start()
    try:
        wait_for(lambda: _locked_by_other_process(str(store)), 60, "the worker to open its store")
        r = hub("query", "--clickhouse", f"chdb://{store}", "SELECT 1")
        assert r.returncode == 1
        # one line: the engine's own multi-line lock error is held back
        assert r.stderr.strip().splitlines() == [r.stderr.strip()]
        assert r.stderr.startswith(f"hub query: error: the embedded store {store} is in use")
        assert "does not serve live reads" in r.stderr
    finally:
        worker.stop()
