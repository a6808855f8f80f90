"""Typed configuration: one file plus environment overrides, validated at start.

Precedence (last wins): struct defaults < config file < `HUB_<SECTION>__<KEY>` environment
variables < command-line flags. Secrets are read only from the environment, so a config
file can be committed or shown without leaking them.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from config.detection import DetectionSettings
from config.errors import HubError
from config.normalization import NormalizationSettings
from schemas.vocabulary import SOURCES

DEFAULT_CONFIG = Path(__file__).with_name("hub.toml")
ENV_PREFIX = "HUB_"
MASK = "***"


class ConfigError(HubError):
    """A configuration problem, worded as one line for the operator."""


class Topics(msgspec.Struct, forbid_unknown_fields=True):
    telemetry: str = "llm.telemetry"
    security: str = "llm.security"
    cost: str = "llm.cost"
    governance: str = "llm.governance"
    registry: str = "llm.registry"
    policy: str = "llm.policy"
    dead_letter: str = "llm.dead-letters"
    alerts: str = "llm.alerts"

    def by_source(self) -> dict[str, str]:
        """Source module -> input topic."""
        return {s: getattr(self, s) for s in SOURCES}


class KafkaSettings(msgspec.Struct, forbid_unknown_fields=True):
    # Empty means "no Kafka": `hub run` reads the synthetic generator or a file instead.
    bootstrap_servers: str = ""
    group_id: str = "llm-analytics-hub"
    topics: Topics = msgspec.field(default_factory=Topics)
    # librdkafka properties passed through as-is (security.protocol, sasl.mechanism, ssl.*).
    client_config: dict[str, str] = {}
    # Secret: only from HUB_KAFKA__SASL_PASSWORD.
    sasl_password: str = ""
    batch_size: int = 2000
    starting_offset: Literal["earliest", "latest"] = "earliest"
    connect_timeout_s: float = 10.0


class ClickHouseSettings(msgspec.Struct, forbid_unknown_fields=True):
    # chdb:///abs/path or chdb://relative/path = embedded engine; http(s)://host:port = server.
    dsn: str = "chdb://.hub/store"
    database: str = "default"
    username: str = "default"
    # Secret: only from HUB_CLICKHOUSE__PASSWORD.
    password: str = ""
    insert_batch_rows: int = 10_000
    insert_max_delay_s: float = 1.0
    connect_timeout_s: float = 10.0


class WindowSettings(msgspec.Struct, forbid_unknown_fields=True):
    # Events whose 1-minute window closed more than this long ago (in event time) are late.
    allowed_lateness_s: int = 60
    # With no input for this long, windows are closed by the wall clock (tailing Kafka).
    idle_close_s: int = 30


class RetentionSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Days kept per table; applied as ClickHouse TTLs by `hub migrate`."""

    events_days: int = 7
    dead_letters_days: int = 30
    late_events_days: int = 30
    metrics_1m_days: int = 7
    metrics_5m_days: int = 30
    metrics_15m_days: int = 30
    metrics_1h_days: int = 90
    metrics_6h_days: int = 180
    metrics_1d_days: int = 365
    metrics_1w_days: int = 730
    metrics_1mo_days: int = 1825
    anomalies_days: int = 365
    incidents_days: int = 365


class RecoverySettings(msgspec.Struct, forbid_unknown_fields=True):
    # Empty: no recovery snapshots (fine for one-shot file/synthetic runs).
    dir: str = ""
    snapshot_interval_s: float = 10.0
    backup_interval_s: float = 0.0
    partitions: int = 1


class MetricsEndpointSettings(msgspec.Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    # 0 disables the Prometheus endpoint.
    port: int = 0


class HubConfig(msgspec.Struct, forbid_unknown_fields=True):
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    clickhouse: ClickHouseSettings = msgspec.field(default_factory=ClickHouseSettings)
    windows: WindowSettings = msgspec.field(default_factory=WindowSettings)
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)
    recovery: RecoverySettings = msgspec.field(default_factory=RecoverySettings)
    metrics: MetricsEndpointSettings = msgspec.field(default_factory=MetricsEndpointSettings)
    normalization: NormalizationSettings = msgspec.field(default_factory=NormalizationSettings)
    detection: DetectionSettings = msgspec.field(default_factory=DetectionSettings)


# (section, key) pairs that may only come from the environment.
SECRETS = {("kafka", "sasl_password"), ("clickhouse", "password")}
SECRET_CLIENT_KEYS = ("sasl.password", "ssl.key.password", "ssl.keystore.password")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _check_no_file_secrets(data: dict[str, Any], path: Path) -> None:
    for section, key in SECRETS:
        if key in (data.get(section) or {}):
            env = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            raise ConfigError(f"{section}.{key} in {path}: secrets are read only from the environment ({env})")
    client = (data.get("kafka") or {}).get("client_config") or {}
    for key in SECRET_CLIENT_KEYS:
        if key in client:
            raise ConfigError(
                f"kafka.client_config.{key} in {path}: secrets are read only from the environment "
                f"({ENV_PREFIX}KAFKA__SASL_PASSWORD, or HUB_KAFKA__CLIENT_CONFIG__{key.replace('.', '_').upper()})"
            )


def _parse_env_value(raw: str) -> Any:
    """Env values are TOML scalars/arrays when they parse as such, else plain strings."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == "HUB_CONFIG":
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if path[:2] == ["kafka", "client_config"] and len(path) == 3:
            # librdkafka keys use dots: HUB_KAFKA__CLIENT_CONFIG__SASL_MECHANISM -> sasl.mechanism
            path[2] = path[2].replace("_", ".")
            value: Any = raw
        else:
            value = raw if tuple(path) in SECRETS else _parse_env_value(raw)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment variable {name}: {'.'.join(path[:-1])} is not a section")
            node = child
        node[path[-1]] = value


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(err: msgspec.ValidationError) -> str:
    """msgspec says `... - at `$.kafka.batch_size``; operators want `kafka.batch_size: ...`."""
    msg = str(err)
    if " - at `$." in msg:
        what, where = msg.rsplit(" - at `$.", 1)
        return f"{where.rstrip('`')}: {what}"
    return msg


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> HubConfig:
    """Build the effective config; raise ConfigError with one clear line on any problem."""
    environ = dict(os.environ if environ is None else environ)
    if path is None and environ.get("HUB_CONFIG"):
        path = environ["HUB_CONFIG"]
    file = Path(path) if path is not None else DEFAULT_CONFIG
    data = _read_file(file)
    _check_no_file_secrets(data, file)
    _apply_env(data, environ)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(data, dotted, value)
    try:
        # Over the defaults, key by key: setting one metric's detector keeps every other default.
        cfg = msgspec.convert(_deep_merge(msgspec.to_builtins(HubConfig()), data), HubConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid config ({file}): {_describe(exc)}") from None
    _validate(cfg)
    return cfg


def _validate(cfg: HubConfig) -> None:
    """Rules msgspec types can't say: ranges and DSN shapes."""
    dsn = cfg.clickhouse.dsn
    if not dsn.startswith(("chdb://", "http://", "https://")):
        raise ConfigError(f"clickhouse.dsn: {dsn!r} must start with chdb://, http:// or https://")
    positive = {
        "kafka.batch_size": cfg.kafka.batch_size,
        "clickhouse.insert_batch_rows": cfg.clickhouse.insert_batch_rows,
        "recovery.partitions": cfg.recovery.partitions,
        "recovery.snapshot_interval_s": cfg.recovery.snapshot_interval_s,
    }
    positive |= {f"retention.{k}": getattr(cfg.retention, k) for k in cfg.retention.__struct_fields__}
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be > 0, got {value}")
    for key, value in {"windows.allowed_lateness_s": cfg.windows.allowed_lateness_s,
                       "windows.idle_close_s": cfg.windows.idle_close_s}.items():
        if value < 0:
            raise ConfigError(f"{key}: must be >= 0, got {value}")
    if not 0 <= cfg.metrics.port <= 65535:
        raise ConfigError(f"metrics.port: must be 0..65535, got {cfg.metrics.port}")


def masked(cfg: HubConfig) -> dict[str, Any]:
    """The effective config as plain data with every secret replaced by ***."""
    data = msgspec.to_builtins(cfg)
    for section, key in SECRETS:
        if data[section].get(key):
            data[section][key] = MASK
    client = data["kafka"]["client_config"]
    for key in client:
        if "password" in key or "secret" in key:
            client[key] = MASK
    return data


def kafka_client_config(cfg: HubConfig) -> dict[str, str]:
    """librdkafka settings for any producer/consumer/admin, secrets added from the environment."""
    conf = {"bootstrap.servers": cfg.kafka.bootstrap_servers, **cfg.kafka.client_config}
    if cfg.kafka.sasl_password:
        conf["sasl.password"] = cfg.kafka.sasl_password
    return conf
