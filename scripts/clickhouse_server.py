"""A real ClickHouse HTTP server on 127.0.0.1, served by chdb, for development and CI.

The `http://` DSN path of the hub and the ClickHouse-outage fault (stop the server, keep
producing, restart it on the same data) need a real server; Debian's clickhouse-server is
too old and there is no Docker here. chdb (ClickHouse 26.x in-process) can serve the real
HTTP interface: with ``config.xml`` (listen_host, http_port) in its working directory,
``SYSTEM START LISTEN HTTP; SELECT count() FROM file('FIFO', 'LineAsString', ...)`` serves
HTTP and blocks until a line is written to the named pipe FIFO. SIGTERM also stops it, and
the data directory survives restarts. One chdb path per process, so the server always runs
in its own process.

    python scripts/clickhouse_server.py serve --data DIR --port PORT   # foreground
    python scripts/clickhouse_server.py start --data DIR [--port PORT] # background; prints URL
    python scripts/clickhouse_server.py stop RUN_DIR

Importable: ``start(data_dir, port=None) -> Server`` and ``stop(server)``.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from ports import free_port, port_free

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
# A clean stop waits for idle keep-alive connections to time out (ClickHouse's default of
# 30 s made a stop take 5 s with a clickhouse-connect pool open). clickhouse-connect reads
# the server's Keep-Alive header and drops expired connections itself, so 1 s is safe.
KEEP_ALIVE_S = 1
FIFO_NAME = "stop.fifo"
USERS_FILE = "users.xml"
SCRIPT = Path(__file__).resolve()


class ServerError(RuntimeError):
    """A failure with a message a human can act on (printed as one line by the CLI)."""


@dataclass
class Server:
    """A running server: its port, process, data directory and run directory (FIFO, log)."""

    port: int
    pid: int
    data_dir: Path
    run_dir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fifo(self) -> Path:
        return self.run_dir / FIFO_NAME

    @property
    def log(self) -> Path:
        return self.run_dir / "server.log"



def serve(data_dir: Path, port: int, run_dir: Path, keep_alive_s: int = KEEP_ALIVE_S) -> None:
    """Serve HTTP on 127.0.0.1:port from data_dir until a line arrives on run_dir/FIFO.

    Runs in the calling process (chdb holds one path per process). chdb reports a failed
    listen or a locked data dir only on stderr and returns an empty result, so an empty
    result is the failure signal.
    """
    import chdb._chdb as chdb_native  # lazy: start/stop do not need chdb

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    # users.xml (written by `start(users=...)`): extra password users next to a password-less default.
    users = "<users_config>users.xml</users_config>" if (run_dir / USERS_FILE).is_file() else ""
    (run_dir / "config.xml").write_text(
        f"<clickhouse><listen_host>127.0.0.1</listen_host><http_port>{port}</http_port>"
        f"<keep_alive_timeout>{keep_alive_s}</keep_alive_timeout>{users}</clickhouse>\n"
    )
    fifo = run_dir / FIFO_NAME
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    (run_dir / "pid").write_text(f"{os.getpid()}\n")
    (run_dir / "port").write_text(f"{port}\n")
    (run_dir / "data_dir").write_text(f"{data_dir}\n")
    os.chdir(run_dir)  # chdb reads config.xml and resolves file('...') from the cwd
    # Python's SIGINT handler would only run after the blocking C call returns: let ^C kill.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        res = chdb_native.query(
            f"SYSTEM START LISTEN HTTP; SELECT count() FROM file('{FIFO_NAME}', 'LineAsString', 'line String')",
            "TabSeparated",
            path=str(data_dir),
        )
    finally:
        fifo.unlink(missing_ok=True)
    if not res.bytes():
        raise ServerError(f"chdb did not serve 127.0.0.1:{port} from {data_dir} (see the ClickHouse error above)")


def _alive(server: Server) -> bool:
    if server.proc is not None:
        return server.proc.poll() is None
    try:
        done, _ = os.waitpid(server.pid, os.WNOHANG)  # reap it if it is our child
        if done == server.pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(server.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(server.pid)


def _is_zombie(pid: int) -> bool:
    """An exited process that its parent (maybe a slow init) has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _is_our_server(server: Server) -> bool:
    """Guards against signalling an unrelated process that reused a stale pid."""
    if server.proc is not None:
        return True
    try:
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
        cwd = os.readlink(f"/proc/{server.pid}/cwd")
    except OSError:
        return False
    return b"serve" in cmdline and cwd == str(server.run_dir)  # serve chdirs to its run dir



def _serves_path(port: int, data_dir: Path) -> bool:
    """True when the server on the port is the one serving data_dir (not a stranger)."""
    query = urllib.parse.urlencode({"query": "SELECT value FROM system.server_settings WHERE name = 'path'"})
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?{query}", timeout=5) as resp:
            path = resp.read().decode().strip()
    except (OSError, urllib.error.URLError):
        return False
    return Path(path).resolve() == data_dir


def ping(port: int, timeout_s: float = 1.0) -> bool:
    """True when GET /ping on 127.0.0.1:port answers `Ok.`."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=timeout_s) as resp:
            return resp.status == 200 and resp.read().strip() == b"Ok."
    except (OSError, urllib.error.URLError):
        return False


def _last_error(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for marker in ("DB::Exception", "Exception", "error"):
        for ln in reversed(lines):
            if marker in ln:
                return ln[:400]
    return lines[-1][:400] if lines else "empty log"


def start(data_dir: str | os.PathLike[str], port: int | None = None,
          timeout_s: float = START_TIMEOUT_S, run_dir: str | os.PathLike[str] | None = None,
          users: dict[str, str] | None = None) -> Server:
    """Spawn `serve` in a subprocess and wait until /ping answers; raise ServerError if not.

    With port=None a free port is picked (and re-picked once if another process grabs it
    between the pick and the listen). `users`: name -> password of users that must log in
    with their password (to test that clients send it); `default` stays password-less.
    """
    data = Path(data_dir).resolve()
    if users:
        run_dir = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix="hub-chserver-"))
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / USERS_FILE).write_text(users_xml(users))
    attempts = 1 if port is not None else 2
    last: ServerError | None = None
    for _ in range(attempts):
        try:
            return _start_once(data, port if port is not None else free_port(), timeout_s, run_dir)
        except ServerError as exc:
            last = exc
            if "in use" not in str(exc):
                break
    assert last is not None
    raise last


def users_xml(users: dict[str, str]) -> str:
    """ClickHouse's users file: a password-less `default` (chdb's own queries run as it) and `users`."""
    def user(name: str, password: str) -> str:
        return (f"<{name}><password>{escape(password)}</password><networks><ip>::/0</ip></networks>"
                f"<profile>default</profile><quota>default</quota><access_management>1</access_management></{name}>")

    entries = "".join(user(n, p) for n, p in {"default": "", **users}.items())
    return f"<clickhouse><users>{entries}</users><profiles><default/></profiles><quotas><default/></quotas></clickhouse>\n"


def _start_once(data: Path, port: int, timeout_s: float,
                run_dir: str | os.PathLike[str] | None) -> Server:
    if not port_free(port):
        raise ServerError(f"port {port} on 127.0.0.1 is already in use")
    run = Path(run_dir).resolve() if run_dir else Path(tempfile.mkdtemp(prefix="hub-chserver-"))
    run.mkdir(parents=True, exist_ok=True)
    log_path = run / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "serve", "--data", str(data), "--port", str(port),
             "--run-dir", str(run)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed by a ^C meant for the parent
        )
    server = Server(port=port, pid=proc.pid, data_dir=data, run_dir=run, proc=proc)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if proc.poll() is not None:
                raise ServerError(f"clickhouse server exited with code {proc.returncode} during start: "
                                  f"{_last_error(log_path)}")
            # A stranger grabbing the port makes our process exit with "Address already in
            # use" (handled above), so only a server on our data dir counts as started.
            if ping(port) and _serves_path(port, data):
                return server
            if time.monotonic() > deadline:
                raise ServerError(f"clickhouse server did not answer /ping on 127.0.0.1:{port} "
                                  f"within {timeout_s:.0f}s (log: {log_path})")
            time.sleep(0.05)  # polling interval between pings, bounded by the deadline
    except BaseException:
        stop(server)
        raise


def is_running(server: Server) -> bool:
    """True while the server's process lives (an exited, unreaped one counts as gone)."""
    return _alive(server)


def _wait_gone(server: Server, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(server):
            return True
        time.sleep(0.05)
    return not _alive(server)


def stop(server: Server, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop cleanly through the FIFO; SIGTERM, then SIGKILL, if it does not exit in time."""
    if not _alive(server) or not _is_our_server(server):
        return
    try:
        # Non-blocking open: fails with ENXIO when no reader waits on the FIFO (not yet or
        # no longer serving) instead of hanging forever.
        fd = os.open(server.fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno not in (errno.ENXIO, errno.ENOENT):
            raise
    else:
        try:
            os.write(fd, b"stop\n")
        finally:
            os.close(fd)
        if _wait_gone(server, timeout_s):
            return
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(server.pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(server, wait):
            return


def restart(server: Server, timeout_s: float = START_TIMEOUT_S) -> Server:
    """Stop and start again on the same data dir and port, so clients keep their URL."""
    stop(server)
    return start(server.data_dir, port=server.port, timeout_s=timeout_s)


def server_in(run_dir: str | os.PathLike[str]) -> Server:
    """The server recorded in RUN_DIR by `serve` (for `stop RUN_DIR` from another process)."""
    run = Path(run_dir).resolve()
    try:
        pid = int((run / "pid").read_text().strip())
        port = int((run / "port").read_text().strip())
        data = Path((run / "data_dir").read_text().strip())
    except (OSError, ValueError):
        raise ServerError(f"no server recorded in {run} (missing or bad pid/port files)") from None
    return Server(port=port, pid=pid, data_dir=data, run_dir=run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clickhouse_server",
                                     description="Local ClickHouse HTTP server served by chdb.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_serve = sub.add_parser("serve", help="serve in the foreground until stopped")
    p_serve.add_argument("--data", required=True, help="data directory (kept across restarts)")
    p_serve.add_argument("--port", type=int, required=True)
    p_serve.add_argument("--run-dir", help="where config.xml, the stop FIFO and pid go (default: temp)")
    p_serve.add_argument("--keep-alive", type=int, default=KEEP_ALIVE_S, help="HTTP keep-alive timeout, s")
    p_start = sub.add_parser("start", help="start in the background; prints the URL last")
    p_start.add_argument("--data", required=True, help="data directory (kept across restarts)")
    p_start.add_argument("--port", type=int, help="default: a free port")
    p_start.add_argument("--run-dir", help="default: a new temp dir")
    p_start.add_argument("--timeout", type=float, default=START_TIMEOUT_S)
    p_stop = sub.add_parser("stop", help="stop the server whose run dir is RUN_DIR")
    p_stop.add_argument("run_dir")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "serve":
            run = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix="hub-chserver-"))
            print(f"clickhouse_server: serving http://127.0.0.1:{args.port} from {args.data}; "
                  f"stop: echo > {run.resolve() / FIFO_NAME}", file=sys.stderr, flush=True)
            serve(Path(args.data), args.port, run, keep_alive_s=args.keep_alive)
        elif args.cmd == "start":
            t0 = time.monotonic()
            server = start(args.data, port=args.port, timeout_s=args.timeout, run_dir=args.run_dir)
            print(f"clickhouse_server: pid {server.pid} answering after {time.monotonic() - t0:.1f}s; "
                  f"stop with: python {SCRIPT} stop {server.run_dir}", file=sys.stderr)
            print(server.url, flush=True)
        elif args.cmd == "stop":
            stop(server_in(args.run_dir))
    except ServerError as exc:
        print(f"clickhouse_server: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"clickhouse_server: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
