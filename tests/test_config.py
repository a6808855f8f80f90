"""Typed config: file + environment + flags, one-line errors, secrets only from the environment."""
from __future__ import annotations

import tomllib

import msgspec
import pytest

from config.settings import ConfigError, HubConfig, load_config, masked, to_toml


def write(tmp_path, text: str):
    p = tmp_path / "hub.toml"
    p.write_text(text)
    return p


def test_defaults_load_from_packaged_file():
    cfg = load_config(environ={})
    assert cfg.kafka.bootstrap_servers == ""
    assert cfg.clickhouse.dsn.startswith("chdb://")
    assert cfg.kafka.topics.by_source()["telemetry"] == "llm.telemetry"
    assert cfg.retention.events_days == 7 and cfg.retention.metrics_1h_days == 90


def test_env_overrides_file_and_flags_override_env(tmp_path):
    p = write(tmp_path, '[kafka]\nbootstrap_servers = "file:9092"\nbatch_size = 10\n')
    cfg = load_config(p, environ={"HUB_KAFKA__BOOTSTRAP_SERVERS": "env:9092", "HUB_WINDOWS__ALLOWED_LATENESS_S": "120"})
    assert cfg.kafka.bootstrap_servers == "env:9092"
    assert cfg.kafka.batch_size == 10
    assert cfg.windows.allowed_lateness_s == 120
    cfg = load_config(p, overrides={"kafka.bootstrap_servers": "flag:9092"}, environ={"HUB_KAFKA__BOOTSTRAP_SERVERS": "env:9092"})
    assert cfg.kafka.bootstrap_servers == "flag:9092"


def test_librdkafka_passthrough_from_env():
    cfg = load_config(environ={"HUB_KAFKA__CLIENT_CONFIG__SECURITY_PROTOCOL": "SASL_SSL"})
    assert cfg.kafka.client_config == {"security.protocol": "SASL_SSL"}


@pytest.mark.parametrize("text, key", [
    ("[kafka]\nbatch_size = \"many\"\n", "kafka.batch_size"),
    ("[kafka]\nbatchsize = 3\n", "batchsize"),
    ("[clickhouse]\ndsn = \"mysql://x\"\n", "clickhouse.dsn"),
    ("[windows]\nallowed_lateness_s = -1\n", "windows.allowed_lateness_s"),
    ("[retention]\nevents_days = 0\n", "retention.events_days"),
    ("[kafka]\nbatch_size = 0\n", "kafka.batch_size"),
    ("[recovery]\nsnapshot_interval_s = 0.0\n", "recovery.snapshot_interval_s"),
    ("[metrics]\nport = 65536\n", "metrics.port"),
])
def test_invalid_config_names_the_key_in_one_line(tmp_path, text, key):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ={})
    msg = str(err.value)
    assert key in msg and "\n" not in msg


def test_range_error_says_the_rule_and_the_value():
    with pytest.raises(ConfigError) as err:
        load_config(environ={"HUB_WINDOWS__ALLOWED_LATENESS_S": "-1"})
    assert str(err.value).endswith("windows.allowed_lateness_s: expected >= 0, got -1")


def test_rules_live_on_the_config_types():
    """Any decoder of HubConfig gets the same rules, not only load_config."""
    with pytest.raises(msgspec.ValidationError, match="allowed_lateness_s"):
        msgspec.convert({"windows": {"allowed_lateness_s": -1}}, HubConfig)
    with pytest.raises(msgspec.ValidationError, match="dsn"):
        msgspec.json.decode(b'{"clickhouse": {"dsn": "mysql://x"}}', type=HubConfig)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[kafka\n"), environ={})


def test_secrets_refused_in_file_and_masked_when_from_env(tmp_path):
    with pytest.raises(ConfigError, match="HUB_CLICKHOUSE__PASSWORD"):
        load_config(write(tmp_path, '[clickhouse]\npassword = "hunter2"\n'), environ={})
    with pytest.raises(ConfigError, match="sasl.password"):
        load_config(write(tmp_path, '[kafka.client_config]\n"sasl.password" = "x"\n'), environ={})
    cfg = load_config(environ={"HUB_CLICKHOUSE__PASSWORD": "hunter2", "HUB_KAFKA__SASL_PASSWORD": "pw"})
    assert cfg.clickhouse.password == "hunter2"
    shown = masked(cfg)
    assert shown["clickhouse"]["password"] == "***" and shown["kafka"]["sasl_password"] == "***"
    assert "hunter2" not in repr(shown)


def test_one_metric_override_keeps_the_other_metric_defaults(tmp_path):
    p = write(tmp_path, "[detection.anomaly.metrics.latency_ms]\nsensitivity = 2.0\n")
    cfg = load_config(p, environ={})
    metrics = cfg.detection.anomaly.metrics
    assert metrics["latency_ms"].sensitivity == 2.0
    assert metrics["latency_ms"].types == load_config(environ={}).detection.anomaly.metrics["latency_ms"].types
    assert metrics["requests"].types == ["frequency_change"]


def test_toml_output_loads_back_to_the_same_config(tmp_path):
    """Unset optional keys are left out (TOML has no null); a key that is set survives."""
    p = write(tmp_path, '[normalization.sources.cost]\nmode = "lenient"\n'
                        '[detection.anomaly.metrics.errors]\nfill_missing = true\n'
                        '[kafka.client_config]\n"security.protocol" = "SASL_SSL"\n')
    cfg = load_config(p, environ={})
    text = to_toml(cfg)
    data = tomllib.loads(text)
    assert data["normalization"]["sources"]["cost"]["mode"] == "lenient"
    assert "mode" not in data["normalization"]["sources"]["telemetry"]
    assert "fill_missing" not in data["detection"]["anomaly"]["metrics"]["latency_ms"]
    assert load_config(write(tmp_path, text), environ={}) == cfg


def test_toml_output_leaves_secrets_out_and_lists_the_set_ones_masked(tmp_path):
    env = {"HUB_CLICKHOUSE__PASSWORD": "hunter2", "HUB_KAFKA__CLIENT_CONFIG__SSL_KEY_PASSWORD": "keypw"}
    cfg = load_config(environ=env)
    text = to_toml(cfg)
    assert "hunter2" not in text and "keypw" not in text
    assert text.startswith('# clickhouse.password = "***"')
    assert '# kafka.client_config.ssl.key.password = "***"' in text
    data = tomllib.loads(text)
    assert "password" not in data["clickhouse"] and "sasl_password" not in data["kafka"]
    assert load_config(write(tmp_path, text), environ=env) == cfg
