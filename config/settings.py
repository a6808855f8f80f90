"""Typed configuration: one file plus environment overrides, validated at start.

Precedence (last wins): struct defaults < config file < `HUB_<SECTION>__<KEY>` environment
variables < command-line flags. Secrets are read only from the environment, so a config
file can be committed or shown without leaking them.
"""
from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse
from typing import Annotated, Any, Literal

import msgspec
import tomli_w
from msgspec import Meta

from config.alerts import AlertSettings, Budget, check_alerting, literal_urls
from config.cost import CostSettings, ModelSettings, load_prices
from config.detection import DetectionSettings
from config.errors import HubError
from config.normalization import NormalizationSettings
from config.secrets import SECRETS, SecretError, check_no_file_secrets, is_secret_variable, read_secrets
from schemas.vocabulary import SOURCES

DEFAULT_CONFIG = Path(__file__).with_name("hub.toml")
ENV_PREFIX = "HUB_"
MASK = "***"

# Value rules as types: msgspec checks them while converting and names the key on failure.
PositiveInt = Annotated[int, Meta(gt=0)]
PositiveFloat = Annotated[float, Meta(gt=0)]
NonNegativeInt = Annotated[int, Meta(ge=0)]
Port = Annotated[int, Meta(ge=0, le=65535)]
# chdb:///abs/path or chdb://relative/path = embedded engine; http(s)://host:port = server.
Dsn = Annotated[str, Meta(pattern="^(chdb|https?)://")]


class ConfigError(HubError):
    """A configuration problem, worded as one line for the operator."""


def _check_files(**paths: str) -> None:
    """TLS files are named in config and read by the clients later: say which one is missing now."""
    for key, path in paths.items():
        if path and not Path(path).is_file():
            raise ValueError(f"{key}: no such file {path}")


class Topics(msgspec.Struct, forbid_unknown_fields=True):
    telemetry: str = "llm.telemetry"
    security: str = "llm.security"
    cost: str = "llm.cost"
    governance: str = "llm.governance"
    registry: str = "llm.registry"
    policy: str = "llm.policy"
    dead_letter: str = "llm.dead-letters"
    alerts: str = "llm.alerts"
    # Outbound feeds (README "Registry, compliance and feeds"); an empty name turns that feed off.
    usage_feed: str = "llm.feeds.usage"
    compliance_feed: str = "llm.feeds.compliance"
    violation_feed: str = "llm.feeds.violations"
    audit_feed: str = "llm.feeds.audit"
    asset_feed: str = "llm.feeds.assets"

    def by_source(self) -> dict[str, str]:
        """Source module -> input topic."""
        return {s: getattr(self, s) for s in SOURCES}


class KafkaSettings(msgspec.Struct, forbid_unknown_fields=True):
    # Empty means "no Kafka": `hub run` reads the synthetic generator or a file instead.
    bootstrap_servers: str = ""
    group_id: str = "llm-analytics-hub"
    topics: Topics = msgspec.field(default_factory=Topics)
    # librdkafka properties passed through as-is; they win over the typed settings below.
    client_config: dict[str, str] = {}
    # Credentials and TLS, for the source, the topic sinks and admin calls alike (README,
    # "Credentials and TLS"). Empty: librdkafka's default (PLAINTEXT).
    security_protocol: Literal["", "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = ""
    sasl_mechanism: Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = ""
    sasl_username: str = ""
    # Secret: only from HUB_KAFKA__SASL_PASSWORD or the file HUB_KAFKA__SASL_PASSWORD_FILE names.
    sasl_password: str = ""
    ssl_ca_file: str = ""  # PEM CA bundle that signed the broker's certificate (default: the system's)
    ssl_cert_file: str = ""  # client certificate (PEM), for brokers that require one
    ssl_key_file: str = ""  # its private key (PEM)
    # Secret: the key's passphrase, only from HUB_KAFKA__SSL_KEY_PASSWORD(_FILE).
    ssl_key_password: str = ""
    # False: do not check the broker's certificate or host name (test setups only).
    ssl_verify: bool = True
    batch_size: PositiveInt = 2000
    starting_offset: Literal["earliest", "latest"] = "earliest"
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        protocol = self.protocol()
        # (A password alone may be in every environment's secrets; a mechanism or user name says SASL is meant.)
        if protocol not in ("SASL_PLAINTEXT", "SASL_SSL") and (self.sasl_mechanism or self.sasl_username):
            raise ValueError(f"security_protocol: SASL settings need SASL_PLAINTEXT or SASL_SSL, got {protocol}")
        if protocol not in ("SSL", "SASL_SSL") and (self.ssl_ca_file or self.ssl_cert_file or self.ssl_key_file):
            raise ValueError(f"security_protocol: ssl_*_file settings need SSL or SASL_SSL, got {protocol}")
        if bool(self.ssl_cert_file) != bool(self.ssl_key_file):
            raise ValueError("ssl_cert_file and ssl_key_file go together")
        _check_files(ssl_ca_file=self.ssl_ca_file, ssl_cert_file=self.ssl_cert_file, ssl_key_file=self.ssl_key_file)

    def protocol(self) -> str:
        """The security protocol in force (client_config's security.protocol wins)."""
        return (self.client_config.get("security.protocol") or self.security_protocol or "PLAINTEXT").upper()


class ClickHouseSettings(msgspec.Struct, forbid_unknown_fields=True):
    dsn: Dsn = "chdb://.hub/store"
    database: str = "default"
    username: str = "default"
    # Secret: only from HUB_CLICKHOUSE__PASSWORD or the file HUB_CLICKHOUSE__PASSWORD_FILE names.
    password: str = ""
    # TLS, for https:// DSNs: check the server's certificate (against ca_file, else the system's
    # CAs); cert_file + key_file: a client certificate for servers (or proxies) that require one.
    verify: bool = True
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insert_batch_rows: PositiveInt = 10_000
    insert_max_delay_s: float = 1.0
    # Rollup tiers (5m..1mo) trail metrics_1m by at most this; they are whole at every checkpoint.
    rollup_refresh_s: PositiveFloat = 5.0
    connect_timeout_s: float = 10.0
    # Embedded store: `hub run` serves it over ClickHouse's HTTP interface on 127.0.0.1 (address in
    # DIR/.hub-live) so `hub query` and `hub serve` read it while the run writes it.
    live: bool = True

    def __post_init__(self) -> None:
        # A password in the DSN would be shown by `config show` and was never sent: refuse it.
        if urlparse(self.dsn).password is not None:
            raise ValueError("a DSN must not carry a password (it would be shown and stored); set "
                             "HUB_CLICKHOUSE__PASSWORD instead")
        if not self.dsn.startswith("https://") and (self.ca_file or self.cert_file or self.key_file or not self.verify):
            raise ValueError("verify, ca_file, cert_file and key_file are TLS settings: they need an https:// DSN")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together")
        _check_files(ca_file=self.ca_file, cert_file=self.cert_file, key_file=self.key_file)


class WindowSettings(msgspec.Struct, forbid_unknown_fields=True):
    # Events whose 1-minute window closed more than this long ago (in event time) are late.
    allowed_lateness_s: NonNegativeInt = 60
    # With no input for this long, windows are closed by the wall clock (tailing Kafka).
    idle_close_s: NonNegativeInt = 30


class RetentionSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Days kept per table; applied as ClickHouse TTLs by `hub migrate`."""

    events_days: PositiveInt = 7
    dead_letters_days: PositiveInt = 30
    late_events_days: PositiveInt = 30
    metrics_1m_days: PositiveInt = 7
    metrics_5m_days: PositiveInt = 30
    metrics_15m_days: PositiveInt = 30
    metrics_1h_days: PositiveInt = 90
    metrics_6h_days: PositiveInt = 180
    metrics_1d_days: PositiveInt = 365
    metrics_1w_days: PositiveInt = 730
    metrics_1mo_days: PositiveInt = 1825
    anomalies_days: PositiveInt = 365
    incidents_days: PositiveInt = 365
    # alerts, budget_status and notifications (the sent-log: keep it longer than any replay reaches back).
    alerts_days: PositiveInt = 365
    compliance_reports_days: PositiveInt = 365


class RecoverySettings(msgspec.Struct, forbid_unknown_fields=True):
    # Empty: no recovery snapshots (fine for one-shot file/synthetic runs).
    dir: str = ""
    snapshot_interval_s: PositiveFloat = 10.0
    backup_interval_s: float = 0.0
    partitions: PositiveInt = 1


# The worker's HTTP port (/metrics, /healthz, /readyz); also in Dockerfile and docker-compose.yml.
DEFAULT_METRICS_PORT = 9108


class MetricsEndpointSettings(msgspec.Struct, forbid_unknown_fields=True):
    """`hub run`'s HTTP endpoint: Prometheus /metrics, liveness /healthz, readiness /readyz."""

    host: str = "127.0.0.1"
    # 0 disables the endpoint. A port in use stops `hub run` at start with one line.
    port: Port = DEFAULT_METRICS_PORT
    # No batch through the flow for this long (tailing input ticks every second) = stalled: not
    # ready, and not alive unless the store or broker is down (then it is waiting, not stuck).
    stall_after_s: PositiveFloat = 120.0


class ServeSettings(msgspec.Struct, forbid_unknown_fields=True):
    """`hub serve`: the HTTP API over the store and HTTP ingest (to Kafka, or to the [spool])."""

    host: str = "127.0.0.1"
    port: Port = 8080
    # Store queries at once; a request that finds no free slot within query_timeout_s gets 429.
    max_concurrent_queries: PositiveInt = 10
    # ClickHouse max_execution_time of every API query; past it the answer is a 504 problem.
    query_timeout_s: PositiveFloat = 5.0
    default_page_size: PositiveInt = 100
    max_page_size: PositiveInt = 1000
    # Ingest (POST /v1/traces|metrics|logs, /api/v1/events): a body over this, before or after
    # gzip, is refused (413); keep it within the broker's message.max.bytes for OTLP requests.
    max_body_bytes: PositiveInt = 4 * 1024 * 1024
    max_batch_items: PositiveInt = 10_000
    # An ingest request is answered once the broker acknowledged it, or 503 after this long.
    delivery_timeout_s: PositiveFloat = 10.0
    # Records produced but not yet acknowledged, over all requests; past it: 429 Retry-After.
    max_in_flight: PositiveInt = 50_000
    # GET /api/v1/stream (server-sent events): how often it looks for new anomalies and incident
    # updates, the default heartbeat interval, and how far back it looks for rows stored late.
    stream_poll_s: PositiveFloat = 1.0
    stream_heartbeat_s: PositiveFloat = 15.0
    stream_lookback_s: PositiveFloat = 900.0
    # Secret: only from HUB_SERVE__API_KEYS, comma-separated keys or sha256:<hex> of keys. Required
    # when host is not a loopback address.
    api_keys: str = ""


class SpoolSettings(msgspec.Struct, forbid_unknown_fields=True):
    """HTTP ingest without Kafka: `hub serve` appends accepted messages to a local spool (fsynced
    before it answers) and `hub run --ingest` reads it into the flow."""

    # Empty: `<store dir>.spool` beside an embedded store (chdb://DIR); a server store needs Kafka
    # or an explicit dir.
    dir: str = ""
    # A segment file is closed and a new one started past this size; consumed segments are deleted.
    segment_bytes: PositiveInt = 64 * 1024 * 1024
    # Accepted but not yet consumed by `hub run`; past it ingest answers 429 with Retry-After.
    max_pending_bytes: PositiveInt = 1024 * 1024 * 1024


class HubConfig(msgspec.Struct, forbid_unknown_fields=True):
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    clickhouse: ClickHouseSettings = msgspec.field(default_factory=ClickHouseSettings)
    windows: WindowSettings = msgspec.field(default_factory=WindowSettings)
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)
    recovery: RecoverySettings = msgspec.field(default_factory=RecoverySettings)
    metrics: MetricsEndpointSettings = msgspec.field(default_factory=MetricsEndpointSettings)
    normalization: NormalizationSettings = msgspec.field(default_factory=NormalizationSettings)
    detection: DetectionSettings = msgspec.field(default_factory=DetectionSettings)
    cost: CostSettings = msgspec.field(default_factory=CostSettings)
    models: ModelSettings = msgspec.field(default_factory=ModelSettings)
    budgets: list[Budget] = []
    alerts: AlertSettings = msgspec.field(default_factory=AlertSettings)
    serve: ServeSettings = msgspec.field(default_factory=ServeSettings)
    spool: SpoolSettings = msgspec.field(default_factory=SpoolSettings)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _parse_env_value(raw: str) -> Any:
    """Env values are TOML scalars/arrays when they parse as such, else plain strings."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == "HUB_CONFIG" or is_secret_variable(name):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if path[:2] == ["kafka", "client_config"] and len(path) == 3:
            # librdkafka keys use dots: HUB_KAFKA__CLIENT_CONFIG__SASL_MECHANISM -> sasl.mechanism
            path[2] = path[2].replace("_", ".")
            value: Any = raw
        else:
            value = _parse_env_value(raw)
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


def _describe(err: msgspec.ValidationError, data: dict[str, Any]) -> str:
    """msgspec says ``Expected `int` >= 0 - at `$.windows.allowed_lateness_s` ``; operators want
    `windows.allowed_lateness_s: expected >= 0, got -1`, the value included because it may come
    from the file, the environment or a flag."""
    msg = str(err)
    if " - at `$." not in msg:
        return msg
    what, where = msg.rsplit(" - at `$.", 1)
    where = where.rstrip("`")
    what = re.sub(r"^Expected `[^`]+` (?=[<>])", "expected ", what)
    what = what[:1].lower() + what[1:]
    value: Any = data
    for part in where.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, (int, float, str)) and "got" not in what:
        what += f", got {value!r}"
    return f"{where}: {what}"


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
    try:
        check_no_file_secrets(data, file)
        secrets = read_secrets(environ)
    except SecretError as exc:
        raise ConfigError(str(exc)) from None
    for where in literal_urls(data):
        raise ConfigError(f"{where} in {file}: webhook URLs carry tokens and are read only from the environment; "
                          "name the variable that holds it with url_env")
    _apply_env(data, environ)
    for (section, key), value in secrets.items():
        data.setdefault(section, {})[key] = value
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(data, dotted, value)
    # Over the defaults, key by key: setting one metric's detector keeps every other default.
    merged = _deep_merge(msgspec.to_builtins(HubConfig()), data)
    try:
        cfg = msgspec.convert(merged, HubConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid config ({file}): {_describe(exc, merged)}") from None
    problem = check_alerting(cfg.budgets, cfg.alerts)
    if problem:
        raise ConfigError(f"invalid config ({file}): {problem}")
    try:
        load_prices(cfg.cost.price_files)  # a bad price file fails at start, like a bad config
    except HubError as exc:
        raise ConfigError(f"invalid config ({file}): cost.price_files: {exc}") from None
    return cfg


def _secret_paths(data: dict[str, Any]) -> list[tuple[str, ...]]:
    """Where the plain config data has room for a secret, set or not."""
    paths: list[tuple[str, ...]] = [*sorted(SECRETS)]
    paths += [("kafka", "client_config", key) for key in data["kafka"]["client_config"]
              if "password" in key or "secret" in key]
    return paths


def _node(data: dict[str, Any], parents: Sequence[str]) -> dict[str, Any]:
    for part in parents:
        data = data[part]
    return data


def masked(cfg: HubConfig) -> dict[str, Any]:
    """The effective config as plain data with every secret that is set replaced by ***."""
    data = msgspec.to_builtins(cfg)
    for *parents, key in _secret_paths(data):
        node = _node(data, parents)
        if node[key]:
            node[key] = MASK
    return data


def _without_none(data: Any) -> Any:
    if isinstance(data, list):
        return [_without_none(v) for v in data]
    if isinstance(data, dict):
        return {k: _without_none(v) for k, v in data.items() if v is not None}
    return data


def to_toml(cfg: HubConfig) -> str:
    """The effective config as a TOML file that `load_config` accepts as it is.

    TOML has no null, so unset optional keys (None: inherit or automatic) are left out. Secret
    keys are left out too, even empty, since a file holding one is refused; those that are set
    are listed masked in comments instead.
    """
    data = msgspec.to_builtins(cfg)
    notes = []
    for *parents, key in _secret_paths(data):
        if _node(data, parents).pop(key):
            notes.append(f'# {".".join([*parents, key])} = "{MASK}"  (secret: never written here; set it in the environment)\n')
    return "".join(notes) + tomli_w.dumps(_without_none(data))


def kafka_client_config(cfg: HubConfig) -> dict[str, str]:
    """librdkafka settings for any producer/consumer/admin: the typed security settings, then
    client_config (which wins), then the secrets from the environment."""
    k = cfg.kafka
    typed = {"security.protocol": k.security_protocol, "sasl.mechanism": k.sasl_mechanism,
             "sasl.username": k.sasl_username, "ssl.ca.location": k.ssl_ca_file,
             "ssl.certificate.location": k.ssl_cert_file, "ssl.key.location": k.ssl_key_file}
    conf = {"bootstrap.servers": k.bootstrap_servers, **{key: v for key, v in typed.items() if v}}
    if not k.ssl_verify:
        conf.update({"enable.ssl.certificate.verification": "false", "ssl.endpoint.identification.algorithm": "none"})
    conf.update(k.client_config)
    if k.sasl_password:
        conf["sasl.password"] = k.sasl_password
    if k.ssl_key_password:
        conf["ssl.key.password"] = k.ssl_key_password
    return conf
