"""ClickHouse access through clickhouse-connect, for the embedded engine and servers alike.

`chdb://DIR` opens the in-process engine (one path per process), `http(s)://host:port` a
server; everything above this module speaks the same clickhouse-connect Client API.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from config.errors import HubError
from config.settings import ClickHouseSettings


class StoreError(HubError):
    """ClickHouse could not be reached or refused a statement; one line for the operator."""


def chdb_path(dsn: str) -> str:
    """`chdb:///abs` -> /abs, `chdb://rel/dir` -> absolute path of rel/dir."""
    rest = dsn[len("chdb://"):]
    return str(Path(rest).expanduser().resolve())


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb://")


def connect(settings: ClickHouseSettings) -> Client:
    dsn = settings.dsn
    try:
        if is_embedded(dsn):
            path = chdb_path(dsn)
            Path(path).mkdir(parents=True, exist_ok=True)
            return clickhouse_connect.get_client(dsn=f"chdb://{path}", database=settings.database)
        url = urlparse(dsn)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise StoreError(f"clickhouse.dsn {dsn!r}: expected chdb://DIR or http(s)://host:port")
        return clickhouse_connect.get_client(
            host=url.hostname,
            port=url.port or (8443 if url.scheme == "https" else 8123),
            secure=url.scheme == "https",
            username=url.username or settings.username,
            password=settings.password,
            database=settings.database,
            connect_timeout=settings.connect_timeout_s,
        )
    except StoreError:
        raise
    except Exception as exc:  # clickhouse-connect raises several types for one cause
        raise StoreError(f"cannot connect to ClickHouse at {redact(dsn)}: {first_line(exc)}") from None


def redact(dsn: str) -> str:
    url = urlparse(dsn)
    if url.password:
        return dsn.replace(f":{url.password}@", ":***@")
    return dsn


def first_line(exc: BaseException) -> str:
    """The useful part of a driver error: urllib3 buries `[Errno 111] Connection refused` deep inside."""
    text = str(exc).strip() or type(exc).__name__
    errno = re.search(r"\[Errno -?\d+\] ([^\"'()]+)", text)
    if errno:
        return errno.group(1).strip()
    return text.splitlines()[0][:300]


def insert_rows_deduplicated(client: Client, table: str, rows: list[dict[str, Any]], token: str) -> None:
    """Insert small row sets with an insert deduplication token.

    A replay with the same token is dropped by ClickHouse in the table and in every
    materialized view fed by it. Sent as inline JSONEachRow: the chdb backend's native
    insert path ignores the token, the SQL path honours it on both backends.
    """
    import orjson

    body = b"\n".join(orjson.dumps(r, option=orjson.OPT_NON_STR_KEYS) for r in rows).decode()
    safe = token.replace("\\", "\\\\").replace("'", "\\'")
    client.command(
        f"INSERT INTO {table} SETTINGS insert_deduplication_token = '{safe}', "
        f"deduplicate_blocks_in_dependent_materialized_views = 1 FORMAT JSONEachRow\n{body}"
    )
