"""Secrets (passwords) come only from the environment, or from files the environment names.

A config file is meant to be committed, shown (`hub config show`) and copied between machines,
so a secret in one is refused rather than used. Each secret has a variable for its value and
one for a file holding it (`..._FILE`, as Docker and Kubernetes secrets are mounted); the
single-underscore spelling (`HUB_CLICKHOUSE_PASSWORD`) is accepted too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from config.errors import HubError

ENV_PREFIX = "HUB_"
# (section, key) of every secret setting.
SECRETS = (("clickhouse", "password"), ("kafka", "sasl_password"), ("kafka", "ssl_key_password"), ("serve", "api_keys"))
# librdkafka properties that are secrets, refused in [kafka.client_config] of a file.
SECRET_CLIENT_KEYS = ("sasl.password", "ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret")


class SecretError(HubError):
    """A secret in the wrong place, or a secret file that cannot be read; one line, no value."""


def env_names(section: str, key: str) -> tuple[str, ...]:
    """The variables that may hold the secret: the documented one first."""
    return (f"{ENV_PREFIX}{section.upper()}__{key.upper()}", f"{ENV_PREFIX}{section.upper()}_{key.upper()}")


def is_secret_variable(name: str) -> bool:
    """True for the variables read here (the generic HUB_<SECTION>__<KEY> override must skip them)."""
    return any(name in (v, v + "_FILE") for s, k in SECRETS for v in env_names(s, k))


def read_secrets(environ: dict[str, str]) -> dict[tuple[str, str], str]:
    """(section, key) -> value for every secret set in the environment, directly or by file."""
    found: dict[tuple[str, str], str] = {}
    for section, key in SECRETS:
        given = [(name, environ[name]) for var in env_names(section, key) for name in (var, var + "_FILE")
                 if environ.get(name)]
        if len(given) > 1:
            raise SecretError(f"{' and '.join(n for n, _ in given)} are set together; set only one")
        if given:
            name, value = given[0]
            found[(section, key)] = _read_file(name, value) if name.endswith("_FILE") else value
    return found


def _read_file(variable: str, path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SecretError(f"{variable}: cannot read {path}: {reason}") from None
    value = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    if not value:
        raise SecretError(f"{variable}: {path} is empty")
    return value


def check_no_file_secrets(data: dict[str, Any], path: Path) -> None:
    """Refuse a config file that holds a secret (or names a secret file: that is the environment's job)."""
    for section, key in SECRETS:
        for name in (key, key + "_file"):
            if name in (data.get(section) or {}):
                raise SecretError(f"{section}.{name} in {path}: secrets are read only from the environment "
                                  f"({env_names(section, key)[0]} or {env_names(section, key)[0]}_FILE)")
    client = (data.get("kafka") or {}).get("client_config") or {}
    for key in SECRET_CLIENT_KEYS:
        if key in client:
            raise SecretError(f"kafka.client_config.{key} in {path}: secrets are read only from the environment "
                              f"(HUB_KAFKA__CLIENT_CONFIG__{key.replace('.', '_').upper()})")
