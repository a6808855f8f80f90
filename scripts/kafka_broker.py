"""A real single-node Apache Kafka broker (KRaft) on 127.0.0.1 for development and CI.

Tests must exercise Kafka's own behaviour (offsets, partitions, redelivery), so they run
against a real broker rather than a mock. Its jars come from Maven Central through
``scripts/kafka/pom.xml`` (cached), and it runs on the machine's JDK.

Importable (the pytest fixtures use ``start``/``stop``) and runnable:

    python scripts/kafka_broker.py fetch
    python scripts/kafka_broker.py start [DIR]     # last stdout line: 127.0.0.1:PORT
    python scripts/kafka_broker.py stop DIR

``scripts/kafka/kafka`` is the bash wrapper around this module.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ports import free_port, port_free

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class BrokerError(RuntimeError):
    """A failure with a message a human can act on (printed as one line by the CLI)."""


@dataclass
class Security:
    """A SASL_SSL listener instead of PLAINTEXT, to test clients' credentials and TLS for real:
    SASL/PLAIN users, TLS from PEM files, and client certificates required."""

    users: dict[str, str]  # SASL/PLAIN user -> password; the first one is the broker's own
    keystore: Path  # PEM: the broker's private key (PKCS#8, unencrypted) and certificate
    truststore: Path  # PEM: the CA that signed the broker's and the clients' certificates
    client: dict[str, str] = field(default_factory=dict)  # librdkafka settings of the readiness probe


@dataclass
class Broker:
    """A running broker: where clients connect, its process and its directory."""

    bootstrap: str
    pid: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)


def cache_dir() -> Path:
    """Where fetched jars live, shared across work trees so they are fetched once."""
    base = os.environ.get("HUB_CACHE_DIR") or str(Path.home() / ".cache" / "llm-analytics-hub")
    return Path(base) / f"kafka-{KAFKA_VERSION}"


def libs_dir() -> Path:
    return cache_dir() / "libs"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _marker() -> Path:
    return cache_dir() / "fetched.ok"


def is_fetched() -> bool:
    """True when the jars of the current pom were fetched completely."""
    marker = _marker()
    return marker.is_file() and marker.read_text().strip() == _pom_digest() and libs_dir().is_dir()


def fetch(force: bool = False) -> Path:
    """Copy the broker's jars from Maven Central into the cache; no-op when complete.

    Jars land in a temporary sibling directory that is renamed into place, and the marker
    is written last, so an interrupted fetch is never mistaken for a complete one. A lock
    file serializes concurrent fetches (two test sessions starting at once).
    """
    if is_fetched() and not force:
        return libs_dir()
    mvn = os.environ.get("MVN") or shutil.which("mvn")
    if not mvn:
        raise BrokerError("mvn not found on PATH (install Maven or set MVN)")
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_fetched() and not force:
            return libs_dir()  # another process fetched while we waited
        staging = Path(tempfile.mkdtemp(prefix="libs.partial-", dir=root))
        try:
            cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                   f"-DoutputDirectory={staging}", "-Dstyle.color=never"]
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if res.returncode != 0:
                text = re.sub(r"\x1b\[[0-9;]*m", "", res.stdout + res.stderr)  # mvn colours anyway
                lines = [ln for ln in text.splitlines() if "ERROR" in ln]
                detail = lines[0].strip() if lines else f"exit code {res.returncode}"
                raise BrokerError(f"mvn could not fetch Kafka {KAFKA_VERSION} jars: {detail}")
            if not (staging / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
                raise BrokerError(f"mvn finished but kafka_2.13-{KAFKA_VERSION}.jar is missing in {staging}")
            _marker().unlink(missing_ok=True)
            shutil.rmtree(libs_dir(), ignore_errors=True)
            staging.rename(libs_dir())
            _marker().write_text(_pom_digest() + "\n")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return libs_dir()


def java_bin() -> str:
    """The JVM to run: $JAVA if set, else `java` on PATH."""
    override = os.environ.get("JAVA")
    if override:
        java = shutil.which(override)
        if not java:
            raise BrokerError(f"JAVA={override} is not an executable")
        return java
    java = shutil.which("java")
    if not java:
        raise BrokerError("java not found on PATH (install JDK 17 or set JAVA)")
    return java




def _read_props(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def _jaas_value(text: str) -> str:
    """A JAAS option value: quoted, backslashes and quotes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _security_properties(sec: Security) -> str:
    """The SASL_SSL listener's settings (the controller listener stays PLAINTEXT on loopback)."""
    (admin, admin_pw), *_ = sec.users.items()
    users = " ".join(f"user_{name}={_jaas_value(pw)}" for name, pw in sec.users.items())
    jaas = (f"org.apache.kafka.common.security.plain.PlainLoginModule required "
            f"username={_jaas_value(admin)} password={_jaas_value(admin_pw)} {users};")
    return f"""\
sasl.enabled.mechanisms=PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config={jaas.replace(chr(92), chr(92) * 2)}
ssl.keystore.type=PEM
ssl.keystore.location={sec.keystore}
ssl.truststore.type=PEM
ssl.truststore.location={sec.truststore}
ssl.client.auth=required
"""


def _server_properties(data_dir: Path, port: int, cport: int, security: Security | None = None) -> str:
    # Single node: every internal topic has replication factor 1. One offsets partition and
    # no initial rebalance delay make the first consumer-group join fast in tests.
    name = "SASL_SSL" if security else "PLAINTEXT"
    return f"""\
# Written by scripts/kafka_broker.py: single-node KRaft broker for development and CI.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners={name}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners={name}://127.0.0.1:{port}
listener.security.protocol.map={name}:{name},CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name={name}
{_security_properties(security) if security else ""}log.dirs={data_dir}
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
"""


_LOG4J2 = """\
# Written by scripts/kafka_broker.py: broker logs go to stdout, which is kafka.log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def _last_error(log: Path, offset: int = 0) -> str:
    """The most telling line of this run's broker log, to name the problem in one line."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return "no log"
    for i in range(len(lines) - 1, -1, -1):
        if " ERROR " in lines[i] or " FATAL " in lines[i]:
            msg = lines[i].split("] ", 1)[-1].strip()
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if nxt and not nxt.startswith(("[", "at ")):
                msg = f"{msg}: {nxt}"  # the exception that caused it
            return msg[:400]
    return lines[-1].strip()[:400] if lines else "empty log"


def _alive(pid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """An exited process that its parent (maybe a slow init) has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _answers_metadata(bootstrap: str, timeout_s: float, client: dict[str, str] | None = None) -> bool:
    """True when the broker answers a metadata request and lists itself."""
    from confluent_kafka.admin import AdminClient  # lazy: `fetch` needs no Python deps

    quiet = logging.getLogger("kafka_broker.probe")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": quiet,
                         "socket.connection.setup.timeout.ms": 2000, **(client or {})})
    try:
        md = admin.list_topics(timeout=timeout_s)
    except Exception:  # KafkaException while the broker is still starting
        return False
    return bool(md.brokers)


def _can_connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def new_cluster_id() -> str:
    """A KRaft cluster id that never starts with '-' (StorageTool would read it as an option),
    as Kafka's own Uuid.randomUuid does."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def start(dir: str | os.PathLike[str] | None = None, timeout_s: float = START_TIMEOUT_S,
          security: Security | None = None) -> Broker:
    """Format (first time) and start a broker in DIR, and wait until it answers metadata.

    A DIR that already holds a formatted broker is restarted on its old ports and settings,
    so clients that knew the bootstrap address reconnect (a Kafka outage can be simulated
    this way; pass the same `security` again for the readiness probe).
    """
    work = Path(dir) if dir is not None else Path(tempfile.mkdtemp(prefix="hub-kafka-"))
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    pid_file = work / "pid"
    if pid_file.is_file():
        try:
            old = int(pid_file.read_text().strip())
        except ValueError:
            old = -1
        if old > 0 and _is_our_broker(old, work):
            raise BrokerError(f"a broker is already running in {work} (pid {old}); stop it first")
    java = java_bin()  # before a possibly long fetch
    try:
        import confluent_kafka  # noqa: F401  (the readiness probe needs it)
    except ImportError:
        raise BrokerError(f"confluent_kafka is not installed for {sys.executable} "
                          "(use the project's venv or set HUB_PYTHON)") from None
    libs = fetch()
    data_dir = work / "data"
    props_file = work / "server.properties"
    formatted = (data_dir / "meta.properties").is_file() and props_file.is_file()
    if formatted:
        props = _read_props(props_file)
        port = int(props["listeners"].split(",")[0].rsplit(":", 1)[1])
        cport = int(props["controller.quorum.voters"].rsplit(":", 1)[1])
        for p in (port, cport):
            if not port_free(p):
                raise BrokerError(f"port {p} of the broker in {work} is taken by another process")
    else:
        port = free_port()
        cport = free_port()
        while cport == port:
            cport = free_port()
        props_file.write_text(_server_properties(data_dir, port, cport, security))
    log4j = work / "log4j2.properties"
    log4j.write_text(_LOG4J2)
    classpath = str(libs / "*")
    jvm_common = [f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]

    if not formatted:
        cluster_id = new_cluster_id()
        res = subprocess.run(
            [java, *jvm_common, "kafka.tools.StorageTool", "format", "-t", cluster_id,
             "-c", str(props_file)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )
        if res.returncode != 0:
            out = (res.stdout + res.stderr).strip().splitlines()
            detail = out[-1] if out else f"exit code {res.returncode}"
            raise BrokerError(f"kafka storage format failed: {detail}")

    log_path = work / "kafka.log"
    bootstrap = f"127.0.0.1:{port}"
    with open(log_path, "ab") as log:
        log_offset = log.tell()
        proc = subprocess.Popen(
            [java, "-Xmx512m", "-Xms128m", *jvm_common, "kafka.Kafka", str(props_file)],
            cwd=work, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the shell that started it; no stray ^C
        )
    pid_file.write_text(f"{proc.pid}\n")
    (work / "bootstrap").write_text(bootstrap + "\n")
    broker = Broker(bootstrap=bootstrap, pid=proc.pid, dir=work, proc=proc)

    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if proc.poll() is not None:
                raise BrokerError(f"kafka exited with code {proc.returncode} during start: "
                                  f"{_last_error(log_path, log_offset)} (log: {log_path})")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(f"kafka did not answer on {bootstrap} within {timeout_s:.0f}s "
                                  f"(log: {log_path})")
            if _can_connect(port) and _answers_metadata(bootstrap, min(2.0, max(remaining, 0.1)),
                                                        security.client if security else None):
                return broker
            time.sleep(0.1)  # polling interval between probes, bounded by the deadline
    except BaseException:
        stop(broker)
        raise


def _is_our_broker(pid: int, work: Path) -> bool:
    """Guards against signalling an unrelated process that reused a stale pid."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and str(work / "server.properties").encode() in cmdline


def is_running(broker: Broker) -> bool:
    """True while the broker's process lives (an exited, unreaped one counts as gone)."""
    return _alive(broker.pid, broker.proc)


def stop(broker: Broker, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (clean shutdown), wait up to timeout_s, then SIGKILL. Leaves DIR as it is."""
    pid, proc = broker.pid, broker.proc
    if not _alive(pid, proc):
        return
    if proc is None and not _is_our_broker(pid, broker.dir):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid, proc):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid, proc):
        time.sleep(0.05)


def broker_in(dir: str | os.PathLike[str]) -> Broker:
    """The broker recorded in DIR by `start` (for `stop DIR` from another process)."""
    work = Path(dir).resolve()
    try:
        pid = int((work / "pid").read_text().strip())
        bootstrap = (work / "bootstrap").read_text().strip()
    except (OSError, ValueError):
        raise BrokerError(f"no broker recorded in {work} (missing or bad pid/bootstrap file)") from None
    return Broker(bootstrap=bootstrap, pid=pid, dir=work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kafka", description="Local single-node Kafka broker (KRaft).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="fetch the broker jars from Maven Central (cached)")
    p_start = sub.add_parser("start", help="start a broker; prints 127.0.0.1:PORT last")
    p_start.add_argument("dir", nargs="?", help="working directory (default: a new temp dir)")
    p_start.add_argument("--timeout", type=float, default=START_TIMEOUT_S, help="seconds to wait")
    p_stop = sub.add_parser("stop", help="stop the broker started in DIR")
    p_stop.add_argument("dir")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "fetch":
            t0 = time.monotonic()
            cached = is_fetched()
            libs = fetch()
            what = "already fetched" if cached else f"fetched in {time.monotonic() - t0:.1f}s"
            print(f"kafka: {KAFKA_VERSION} jars {what}: {libs}", file=sys.stderr)
        elif args.cmd == "start":
            java_bin()
            if not is_fetched():
                print(f"kafka: fetching Kafka {KAFKA_VERSION} jars with mvn ...", file=sys.stderr)
            t0 = time.monotonic()
            broker = start(args.dir, timeout_s=args.timeout)
            print(f"kafka: pid {broker.pid} answering after {time.monotonic() - t0:.1f}s; "
                  f"stop with: scripts/kafka/kafka stop {broker.dir}", file=sys.stderr)
            print(broker.bootstrap, flush=True)
        elif args.cmd == "stop":
            stop(broker_in(args.dir))
    except BrokerError as exc:
        print(f"kafka: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kafka: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kafka: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
