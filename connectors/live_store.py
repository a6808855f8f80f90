"""Live reads of the embedded store: `hub run` serves it over ClickHouse's HTTP interface.

chdb holds a store directory in one process, so while `hub run` writes `chdb://DIR` nothing
else could read it. chdb can serve ClickHouse's real HTTP interface from inside a process
(measured with chdb 4.4 / ClickHouse 26.9): a one-shot engine started by
``chdb._chdb.query("SYSTEM START LISTEN HTTP; ...", path=DIR)`` with ``config.xml`` in the
working directory listens while that query runs, and releases the GIL while it blocks.
A process can start that engine once, before any other chdb use, and no chdb engine after it
ends ("EventNotifier is initialized twice"); `chdb.connect()` engines cannot listen at all
("start_servers_callback is not set"). So a serving process talks to its own store over HTTP
too, and only a process that opens nothing else in chdb may serve (the `hub` program does).

Who may do what on the port (127.0.0.1 only):
- every request but /ping must carry the run's random token (``X-Hub-Live`` header); others
  get 403. The token is in DIR/.hub-live, mode 0600: the same OS user that owns the store;
- `hub_writer` (this process: flow, migrations, rollups) has a random password never written
  in clear (users.xml holds its SHA-256);
- `hub_reader` (``hub query``, ``hub serve``, dashboards) is readonly=2 with SELECT and SHOW
  grants only: no writes, no DDL, no file()/url() reads, per-query limits allowed;
- `default` (the engine's own one-shot query) may only listen and read/write its files.

DIR/.hub-live (JSON: url, pid, token, reader credentials) exists while the store is served and
is removed at a clean stop; a reader ignores it when its pid is gone or the URL does not answer.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.errors import HubError

LIVE_FILE = ".hub-live"
RUN_DIR = ".hub-live-run"  # the engine's config.xml, users.xml (password hashes), stop FIFO, port
TOKEN_HEADER = "X-Hub-Live"
WRITER = "hub_writer"
READER = "hub_reader"
HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# Idle keep-alive connections hold up a clean stop until they time out; clickhouse-connect
# reads the server's Keep-Alive header and drops expired connections itself.
KEEP_ALIVE_S = 1


class LiveStoreError(HubError):
    """The store could not be served or reached live; one line for the operator."""


@dataclass(frozen=True)
class LiveAddress:
    """Where and how to reach a served store (what DIR/.hub-live holds)."""

    url: str
    port: int
    pid: int
    token: str
    user: str
    password: str

    def client_args(self) -> dict[str, Any]:
        """Keyword arguments for clickhouse_connect.get_client."""
        return {"host": HOST, "port": self.port, "username": self.user, "password": self.password,
                "headers": {TOKEN_HEADER: self.token},
                # No HTTP sessions: concurrent queries from one client must not lock each other out.
                "autogenerate_session_id": False}


def live_file(path: str | os.PathLike[str]) -> Path:
    return Path(path) / LIVE_FILE


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _config_xml(token: str, users: Path) -> str:
    # http_port 0: the OS picks a free port (one listen_host required), read back with getServerPort.
    return f"""<clickhouse>
  <listen_host>{HOST}</listen_host>
  <http_port>0</http_port>
  <keep_alive_timeout>{KEEP_ALIVE_S}</keep_alive_timeout>
  <users_config>{users}</users_config>
  <http_handlers>
    <rule><url>/ping</url><methods>GET,HEAD</methods><handler><type>ping</type></handler></rule>
    <rule>
      <headers><{TOKEN_HEADER}>{token}</{TOKEN_HEADER}></headers>
      <handler><type>dynamic_query_handler</type><query_param_name>query</query_param_name></handler>
    </rule>
    <rule><handler><type>static</type><status>403</status><content_type>text/plain; charset=UTF-8</content_type>
      <response_content>a live hub store: queries need the token in the store's {LIVE_FILE} file</response_content>
    </handler></rule>
  </http_handlers>
</clickhouse>
"""


def _users_xml(writer_password: str, reader_password: str) -> str:
    local = "<networks><ip>127.0.0.1</ip><ip>::1</ip></networks><quota>default</quota>"
    return f"""<clickhouse>
  <profiles><default/><reader><readonly>2</readonly></reader></profiles>
  <users>
    <default><password></password><profile>default</profile>{local}
      <grants><query>GRANT SYSTEM LISTEN, CREATE TEMPORARY TABLE ON *.*</query><query>GRANT READ, WRITE ON FILE</query></grants>
    </default>
    <{WRITER}><password_sha256_hex>{_sha256(writer_password)}</password_sha256_hex><profile>default</profile>{local}</{WRITER}>
    <{READER}><password_sha256_hex>{_sha256(reader_password)}</password_sha256_hex><profile>reader</profile>{local}
      <grants><query>GRANT SELECT, SHOW ON *.*</query></grants>
    </{READER}>
  </users>
  <quotas><default/></quotas>
</clickhouse>
"""


class LiveServer:
    """This process's embedded store, served on 127.0.0.1 while `hub run` writes it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve()
        self.token = secrets.token_hex(16)
        self.writer_password = secrets.token_hex(16)
        self.reader_password = secrets.token_hex(16)
        self.port = 0
        self.run_dir: Path | None = None
        self._thread: threading.Thread | None = None
        self._result: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def address(self, writer: bool) -> LiveAddress:
        user, password = (WRITER, self.writer_password) if writer else (READER, self.reader_password)
        return LiveAddress(self.url, self.port, os.getpid(), self.token, user, password)

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "LiveServer":
        """Start the engine on a thread and wait until it listens; raise LiveStoreError if not."""
        self.path.mkdir(parents=True, exist_ok=True)
        # In the store, not in /tmp: a killed run's leftovers are replaced by the next start.
        run = self.run_dir = self.path / RUN_DIR
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(mode=0o700)
        (run / "users.xml").write_text(_users_xml(self.writer_password, self.reader_password))
        (run / "config.xml").write_text(_config_xml(self.token, run / "users.xml"))
        os.mkfifo(run / "stop.fifo", 0o600)
        sql = (f"SYSTEM START LISTEN HTTP; "
               f"INSERT INTO FUNCTION file('{run}/port', 'TSV', 'port UInt16') SELECT getServerPort('http_port'); "
               f"SELECT count() FROM file('{run}/stop.fifo', 'LineAsString', 'line String')")
        cwd = os.getcwd()
        os.chdir(run)  # the one-shot engine reads config.xml from the working directory
        # The engine prints its failures (multi-line, with stack traces) straight to fd 2: hold
        # them while it starts, pass them on if it starts, make one line of them if it does not.
        saved = os.dup(2)
        held = tempfile.TemporaryFile()
        os.dup2(held.fileno(), 2)
        try:
            self._thread = threading.Thread(target=self._serve, args=(sql,), name="hub-live-store", daemon=True)
            self._thread.start()
            self.port = self._wait_for_port(run / "port", timeout_s, held)
        except BaseException:
            self.stop()
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.chdir(cwd)
            held.seek(0)
            printed = held.read()
            held.close()
        if printed:
            os.write(2, printed)
        self._publish()
        return self

    def _serve(self, sql: str) -> None:
        import chdb._chdb as chdb_native  # lazy: readers never load the engine

        try:
            res = chdb_native.query(sql, "TabSeparated", path=str(self.path))
            self._result["error"] = (res.error_message() or "").strip()
        except Exception as exc:  # the engine's own failure, reported by start()
            self._result["error"] = str(exc).strip()
        self._result.setdefault("done", "yes")

    def _wait_for_port(self, port_file: Path, timeout_s: float, held: Any) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            if "done" in self._result:
                held.seek(0)
                detail = self._result.get("error") or _exception_line(held.read()) or "the engine stopped at once"
                raise LiveStoreError(f"cannot serve {self.path} live: {detail.splitlines()[0][:300]}")
            text = port_file.read_text().strip() if port_file.exists() else ""
            if text.isdigit() and ping(int(text)):
                return int(text)
            if time.monotonic() > deadline:
                raise LiveStoreError(f"the live store {self.path} did not answer within {timeout_s:.0f}s")
            time.sleep(0.05)  # polling interval, bounded by the deadline

    def _publish(self) -> None:
        """Write DIR/.hub-live atomically, readable by the store's owner only."""
        reader = self.address(writer=False)
        data = {"url": reader.url, "port": reader.port, "pid": reader.pid, "token": reader.token,
                "user": reader.user, "password": reader.password}
        target = live_file(self.path)
        tmp = target.with_name(f"{LIVE_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, target)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop listening and close the engine (a line on the FIFO ends its query)."""
        found = read_live_file(self.path)
        if found is not None and found.token == self.token:
            live_file(self.path).unlink(missing_ok=True)
        if self._thread is not None and self._thread.is_alive() and self.run_dir is not None:
            try:
                fd = os.open(self.run_dir / "stop.fifo", os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                fd = -1  # no reader on the FIFO: the engine is not (or no longer) serving
            if fd >= 0:
                try:
                    os.write(fd, b"stop\n")
                finally:
                    os.close(fd)
            self._thread.join(timeout_s)
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def _exception_line(printed: bytes) -> str:
    lines = [ln.strip() for ln in printed.decode(errors="replace").splitlines() if ln.strip()]
    return next((ln for ln in lines if "Exception" in ln), lines[-1] if lines else "")


def ping(port: int, timeout_s: float = 1.0) -> bool:
    """True when GET /ping on 127.0.0.1:port answers `Ok.` (no token needed)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/ping", timeout=timeout_s) as resp:
            return resp.status == 200 and resp.read().strip() == b"Ok."
    except (OSError, urllib.error.URLError):
        return False


def read_live_file(path: str | os.PathLike[str]) -> LiveAddress | None:
    """The address in DIR/.hub-live, or None when there is none or it is unreadable."""
    try:
        data = json.loads(live_file(path).read_text())
        return LiveAddress(str(data["url"]), int(data["port"]), int(data["pid"]), str(data["token"]),
                           str(data["user"]), str(data["password"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find(path: str | os.PathLike[str]) -> LiveAddress | None:
    """Another process's live server for DIR, if one runs and answers; stale files are ignored."""
    found = read_live_file(path)
    if found is None or not _pid_alive(found.pid) or not ping(found.port):
        return None
    return found


# The store this process serves (at most one: the engine starts once per process).
_SERVED: dict[str, LiveServer] = {}
_ENGINE_USED = False
_ENGINE_ENDED = False


def mark_engine_used() -> None:
    """Called when this process opens chdb itself: from then on it can no longer serve live."""
    global _ENGINE_USED
    _ENGINE_USED = True


def can_serve() -> bool:
    """False once this process opened chdb or served a store (one engine start per process)."""
    return not _ENGINE_USED


def engine_ended() -> bool:
    """True after this process stopped serving: chdb cannot start again in it."""
    return _ENGINE_ENDED


def serve(path: str | os.PathLike[str], timeout_s: float = START_TIMEOUT_S) -> LiveServer:
    """Serve DIR live from this process; connect() then reaches it over HTTP as the writer."""
    if not can_serve():
        raise LiveStoreError("this process already opened an embedded store; it cannot serve one live")
    mark_engine_used()
    server = LiveServer(path)
    _SERVED[str(server.path)] = server
    try:
        return server.start(timeout_s)
    except BaseException:
        _SERVED.pop(str(server.path), None)
        raise


def served_here(path: str | os.PathLike[str]) -> LiveServer | None:
    return _SERVED.get(str(Path(path).resolve()))


def stop_serving(server: LiveServer) -> None:
    """Stop a store served by serve(); the process cannot open chdb again afterwards."""
    global _ENGINE_ENDED
    try:
        server.stop()
    finally:
        _SERVED.pop(str(server.path), None)
        _ENGINE_ENDED = True
