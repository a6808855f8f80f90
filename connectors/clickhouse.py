"""ClickHouse access through clickhouse-connect, for the embedded engine and servers alike.

`chdb://DIR` opens the in-process engine (one path per process), `http(s)://host:port` a
server; everything above this module speaks the same clickhouse-connect Client API. A store that
a running `hub run` serves live (connectors/live_store.py) is reached over HTTP: by that process
itself as the writer, by readers (`connect(..., read_only=True)`) of other processes as a
read-only user.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from config.errors import HubError
from config.settings import ClickHouseSettings
from connectors import live_store
from schemas.assets import ASSET_INFO_COLUMNS


class StoreError(HubError):
    """ClickHouse could not be reached or refused a statement; one line for the operator."""


def chdb_path(dsn: str) -> str:
    """`chdb:///abs` -> /abs, `chdb://rel/dir` -> absolute path of rel/dir."""
    rest = dsn[len("chdb://"):]
    return str(Path(rest).expanduser().resolve())


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb://")


def connect(settings: ClickHouseSettings, read_only: bool = False) -> Client:
    """A client for the configured store. `read_only`: the caller only reads, so an embedded store
    served live by another process is read over HTTP (as a user that cannot write) instead of
    being refused as in use."""
    dsn = settings.dsn
    try:
        if is_embedded(dsn):
            path = chdb_path(dsn)
            served = live_store.served_here(path)
            live = served.address(writer=True) if served else live_store.find(path) if read_only else None
            if live is not None:
                return _connect_live(live, settings)
            if live_store.engine_ended():
                raise StoreError(f"this process served {path} live and has stopped it; it cannot open it again")
            Path(path).mkdir(parents=True, exist_ok=True)
            live_store.mark_engine_used()
            client = _open_embedded(path)
            if settings.database != "default":
                try:
                    client.command(f"CREATE DATABASE IF NOT EXISTS `{settings.database}`")
                except Exception as exc:  # the store is open: the name is what is wrong
                    client.close()
                    raise StoreError(f"cannot use database {settings.database!r} in {path}: {first_line(exc)}") \
                        from None
                client.database = settings.database
            return client
        url = urlparse(dsn)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise StoreError(f"clickhouse.dsn {dsn!r}: expected chdb://DIR or http(s)://host:port")
        server = dict(
            host=url.hostname,
            port=url.port or (8443 if url.scheme == "https" else 8123),
            secure=url.scheme == "https",
            username=url.username or settings.username,
            password=settings.password,
            connect_timeout=settings.connect_timeout_s,
        )
        if url.scheme == "https":
            server.update(verify=settings.verify, ca_cert=settings.ca_file or None, client_cert=settings.cert_file or None,
                          client_cert_key=settings.key_file or None,
                          # a client certificate with a password: TLS plus password login ("strict");
                          # without one the server logs the user in by the certificate ("mutual").
                          tls_mode="strict" if settings.cert_file and settings.password else None)
        if settings.database != "default":
            # A fresh server has only `default`: create the configured database on first use.
            with closing(clickhouse_connect.get_client(**server)) as admin:
                admin.command(f"CREATE DATABASE IF NOT EXISTS `{settings.database}`")
        return clickhouse_connect.get_client(database=settings.database, **server)
    except StoreError:
        raise
    except Exception as exc:  # clickhouse-connect raises several types for one cause
        if is_embedded(dsn) and _locked_by_other_process(chdb_path(dsn)):
            raise StoreError(_in_use(chdb_path(dsn), read_only)) from None
        raise StoreError(f"cannot connect to ClickHouse at {redact(dsn)}: {first_line(exc)}") from None


def read_only_settings(client: Client) -> dict[str, Any]:
    """Query settings that keep a query from writing: {} when the session is read-only already
    (a live store's reader, where ClickHouse refuses any change to `readonly`)."""
    current = getattr(client, "server_settings", {}).get("readonly")
    if current is not None and current.value != "0":
        return {}
    return {"readonly": 1}


def serve_live(settings: ClickHouseSettings) -> live_store.LiveServer:
    """Serve the embedded store of `settings` from this process (see connectors/live_store.py).

    Must come before anything in this process opens chdb; a store held by another process is
    refused with the same line connect() gives."""
    path = chdb_path(settings.dsn)
    if _locked_by_other_process(path):
        raise StoreError(_in_use(path, read_only=False))
    try:
        return live_store.serve(path)
    except live_store.LiveStoreError as exc:
        raise StoreError(str(exc)) from None


def _in_use(path: str, read_only: bool) -> str:
    live = live_store.find(path)
    if live is not None:  # a writer met a live store: say who holds it and what can read it
        return (f"the embedded store {path} is being written by `hub run` (pid {live.pid}); it serves live "
                f"reads only (hub query, hub serve): stop it before changing the store")
    hint = ("; it does not serve live reads ([clickhouse] live = false, or a `hub run` of an older release)"
            if read_only else "")
    return (f"the embedded store {path} is in use by another process (a running `hub run`, `hub serve` or "
            f"`hub query`?){hint}; "
            "stop it first, or serve the data over HTTP and use an http:// DSN")


def _connect_live(live: live_store.LiveAddress, settings: ClickHouseSettings) -> Client:
    """HTTP client for a live store; the configured database is created by the writer only."""
    args = live.client_args()
    if settings.database != "default" and live.user == live_store.WRITER:
        with closing(clickhouse_connect.get_client(connect_timeout=settings.connect_timeout_s, **args)) as admin:
            admin.command(f"CREATE DATABASE IF NOT EXISTS `{settings.database}`")
    return clickhouse_connect.get_client(database=settings.database, connect_timeout=settings.connect_timeout_s,
                                         **args)


def _open_embedded(path: str) -> Client:
    """Open the in-process engine with its stderr held back: on failure it prints its own
    multi-line errors (`Code: 76 ... Cannot lock file ...`) straight to fd 2, and a CLI user
    should see only the hub's one line. What it printed is passed on when opening succeeds."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        printed = held.read()
    if printed:
        sys.stderr.buffer.write(printed)
        sys.stderr.flush()
    return client


def _locked_by_other_process(path: str) -> bool:
    """ClickHouse holds an exclusive lock on DIR/status while an engine has the directory open."""
    import fcntl

    try:
        with open(Path(path) / "status", "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(f, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def redact(dsn: str) -> str:
    url = urlparse(dsn)
    if url.password:
        return dsn.replace(f":{url.password}@", ":***@")
    return dsn


def first_line(exc: BaseException) -> str:
    """The useful part of a driver error: urllib3 buries `[Errno 111] Connection refused` deep inside."""
    text = str(exc).strip() or type(exc).__name__
    tls = re.search(r"\[SSL: [A-Z_]+\][^\"'()]*", text)
    if tls:
        return f"TLS: {tls.group(0).strip()}"
    if "SSLEOFError" in text or "SSLZeroReturnError" in text:
        return "the server ended the TLS handshake (does it require a client certificate? clickhouse.cert_file)"
    errno = re.search(r"\[Errno -?\d+\] ([^\"'()]+)", text)
    if errno:
        return errno.group(1).strip()
    return text.splitlines()[0][:300]


METRICS_1M_COLUMNS = ["metric", "model", "endpoint", "team", "window_start", "shard", "count", "sum", "min", "max",
                      "sumsq", "hist", *ASSET_INFO_COLUMNS]


def insert_new_windows(client: Client, rows: list[list[Any]]) -> int:
    """Insert 1-minute window rows whose (shard, window) is not in the store yet; returns rows inserted.

    A (shard, window) is written once per run, all its series in one insert, so finding any row
    of it means a replay is re-emitting it. metrics_1m's key would collapse the copy anyway; the
    skip keeps a replay from writing the flow's cost rows back over minutes `hub reprice` rebuilt.
    The rollups do not depend on it: they are recomputed from this table (connectors/rollups.py).
    """
    if not rows:
        return 0
    shards = sorted({r[5] for r in rows})
    starts = [r[4] for r in rows]
    existing = set(client.query(
        "SELECT DISTINCT shard, toUnixTimestamp(window_start) FROM metrics_1m "
        "WHERE shard IN {shards:Array(String)} AND window_start BETWEEN toDateTime({lo:UInt32}, 'UTC') AND toDateTime({hi:UInt32}, 'UTC')",
        parameters={"shards": shards, "lo": min(starts), "hi": max(starts)},
    ).result_rows)
    new = [r for r in rows if (r[5], r[4]) not in existing]
    if new:
        client.insert("metrics_1m", new, column_names=METRICS_1M_COLUMNS)
    return len(new)
