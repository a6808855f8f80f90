"""Safe by default (issue 14, item 4): credentials only from the environment (or files it names),
never printed; Kafka SASL/TLS and ClickHouse TLS reach the real broker and server; `hub query`
read-only unless --write.

The Kafka test runs a broker with a SASL_SSL listener that requires client certificates; the
ClickHouse tests put a TLS proxy that requires client certificates in front of a chdb server
with a password user (chdb serves no HTTPS itself). Certificates are made here with openssl.
"""
from __future__ import annotations

import asyncio
import base64
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

import kafka_broker  # scripts/, put on sys.path by conftest
from config.settings import ConfigError, kafka_client_config, load_config
from flows.cli import main
from ports import free_port
from tests.helpers import ROOT, wait_for

SECRETS = {"HUB_CLICKHOUSE__PASSWORD": "ch-Pa55word!x", "HUB_KAFKA__SASL_PASSWORD": "sasl-Pa55word!y",
           "HUB_KAFKA__SSL_KEY_PASSWORD": "key-Pa55word!z"}
KEY_PASSWORD = "key-Pa55word!z"


def hub(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`hub ARGS` in its own process, HUB_* only from `env` (and no metrics port: tests run side by side)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=180,
                          cwd=cwd, env={**base, "PYTHONPATH": str(ROOT), "HUB_METRICS__PORT": "0", **(env or {})})


def leaks(output: str, secrets: dict[str, str], user: str = "hub") -> list[str]:
    """Secret values found in the output, also as the Basic-auth header they would travel in."""
    forms = {}
    for name, value in secrets.items():
        forms[name] = value
        forms[f"{name} (basic auth)"] = base64.b64encode(f"{user}:{value}".encode()).decode()
    return [name for name, form in forms.items() if form in output]


# -- certificates ------------------------------------------------------------------------------

def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate with an encrypted key."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
             "-days", "2", "-subj", "/CN=hub-test-ca")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", str(d / "san.ext")]), ("client", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
                 "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                 "-CAcreateserial", "-out", str(d / f"{name}.pem"), "-days", "2", *ext)
    _openssl("pkcs8", "-topk8", "-in", str(d / "client.key"), "-out", str(d / "client-enc.key"),
             "-passout", f"pass:{KEY_PASSWORD}")
    (d / "server-keystore.pem").write_text((d / "server.key").read_text() + (d / "server.pem").read_text())
    return {"ca": d / "ca.pem", "server_cert": d / "server.pem", "server_key": d / "server.key",
            "keystore": d / "server-keystore.pem", "client_cert": d / "client.pem", "client_key": d / "client-enc.key",
            "client_key_plain": d / "client.key", "dir": d}


# -- config ------------------------------------------------------------------------------------

def test_secrets_come_from_the_environment_or_files_it_names(tmp_path):
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-a-file\n")  # as `echo` and mounted secrets write it
    cfg = load_config(environ={"HUB_CLICKHOUSE__PASSWORD_FILE": str(secret_file)})
    assert cfg.clickhouse.password == "from-a-file"
    assert load_config(environ={"HUB_CLICKHOUSE_PASSWORD": "alias"}).clickhouse.password == "alias"
    cfg = load_config(environ={"HUB_KAFKA__SASL_PASSWORD_FILE": str(secret_file), "HUB_KAFKA__SSL_KEY_PASSWORD": "k=1"})
    assert (cfg.kafka.sasl_password, cfg.kafka.ssl_key_password) == ("from-a-file", "k=1")

    with pytest.raises(ConfigError, match="HUB_CLICKHOUSE__PASSWORD and HUB_CLICKHOUSE__PASSWORD_FILE are set together"):
        load_config(environ={"HUB_CLICKHOUSE__PASSWORD": "x", "HUB_CLICKHOUSE__PASSWORD_FILE": str(secret_file)})
    with pytest.raises(ConfigError, match=r"HUB_KAFKA__SASL_PASSWORD_FILE: cannot read .*/missing: No such file"):
        load_config(environ={"HUB_KAFKA__SASL_PASSWORD_FILE": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(environ={"HUB_CLICKHOUSE__PASSWORD_FILE": str(tmp_path / "empty")})


@pytest.mark.parametrize("text, key", [
    ('[clickhouse]\npassword = "hunter2"\n', "clickhouse.password"),
    ('[clickhouse]\npassword_file = "/run/secrets/ch"\n', "clickhouse.password_file"),
    ('[kafka]\nsasl_password = "hunter2"\n', "kafka.sasl_password"),
    ('[kafka]\nssl_key_password = "hunter2"\n', "kafka.ssl_key_password"),
    ('[kafka.client_config]\n"sasl.password" = "hunter2"\n', "kafka.client_config.sasl.password"),
])
def test_a_secret_in_a_config_file_is_refused_in_one_line(tmp_path, text, key):
    path = tmp_path / "hub.toml"
    path.write_text(text)
    r = hub("config", "check", "--config", str(path))
    assert r.returncode == 1 and r.stdout == ""
    assert key in r.stderr and "environment" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "hunter2" not in r.stderr


def test_security_settings_pass_through_to_the_kafka_clients(pki):
    env = {"HUB_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "HUB_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
           "HUB_KAFKA__SASL_USERNAME": "hub", "HUB_KAFKA__SSL_CA_FILE": str(pki["ca"]),
           "HUB_KAFKA__SSL_CERT_FILE": str(pki["client_cert"]), "HUB_KAFKA__SSL_KEY_FILE": str(pki["client_key"]), **SECRETS}
    conf = kafka_client_config(load_config(environ=env))
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.username"] == "hub" and conf["sasl.password"] == SECRETS["HUB_KAFKA__SASL_PASSWORD"]
    assert conf["ssl.ca.location"] == str(pki["ca"]) and conf["ssl.key.password"] == KEY_PASSWORD
    assert (conf["ssl.certificate.location"], conf["ssl.key.location"]) == (str(pki["client_cert"]), str(pki["client_key"]))
    assert "enable.ssl.certificate.verification" not in conf
    insecure = kafka_client_config(load_config(environ={**env, "HUB_KAFKA__SSL_VERIFY": "false"}))
    assert insecure["enable.ssl.certificate.verification"] == "false"
    # librdkafka's own names in client_config win over the typed settings.
    raw = kafka_client_config(load_config(environ={**env, "HUB_KAFKA__CLIENT_CONFIG__SASL_MECHANISM": "PLAIN"}))
    assert raw["sasl.mechanism"] == "PLAIN"


@pytest.mark.parametrize("env, message", [
    ({"HUB_KAFKA__SASL_USERNAME": "hub"}, "kafka: security_protocol: SASL settings need SASL_PLAINTEXT or SASL_SSL, got PLAINTEXT"),
    ({"HUB_KAFKA__SECURITY_PROTOCOL": "SSL", "HUB_KAFKA__SSL_CA_FILE": "/nonexistent/ca.pem"},
     "kafka: ssl_ca_file: no such file /nonexistent/ca.pem"),
    ({"HUB_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "HUB_KAFKA__SSL_CERT_FILE": "/etc/hostname"},
     "kafka: ssl_cert_file and ssl_key_file go together"),
    ({"HUB_CLICKHOUSE__CA_FILE": "/etc/hostname"}, "clickhouse: verify, ca_file, cert_file and key_file are TLS settings: they need an https:// DSN"),
    ({"HUB_CLICKHOUSE__DSN": "https://db:8443", "HUB_CLICKHOUSE__CA_FILE": "/nonexistent/ca.pem"},
     "clickhouse: ca_file: no such file /nonexistent/ca.pem"),
])
def test_security_settings_that_cannot_work_fail_at_start(env, message):
    with pytest.raises(ConfigError) as err:
        load_config(environ=env)
    assert str(err.value).endswith(message) and "\n" not in str(err.value)


# -- never printed -----------------------------------------------------------------------------

def test_secrets_are_never_printed_by_any_command(tmp_path, pki):
    secret_file = tmp_path / "sasl"
    secret_file.write_text(SECRETS["HUB_KAFKA__SASL_PASSWORD"] + "\n")
    env = {"HUB_CLICKHOUSE__PASSWORD": SECRETS["HUB_CLICKHOUSE__PASSWORD"], "HUB_CLICKHOUSE__USERNAME": "hub",
           "HUB_KAFKA__SASL_PASSWORD_FILE": str(secret_file), "HUB_KAFKA__SSL_KEY_PASSWORD": KEY_PASSWORD,
           "HUB_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "HUB_KAFKA__SASL_MECHANISM": "PLAIN", "HUB_KAFKA__SASL_USERNAME": "hub",
           "HUB_KAFKA__SSL_CA_FILE": str(pki["ca"]), "HUB_KAFKA__SSL_CERT_FILE": str(pki["client_cert"]),
           "HUB_KAFKA__SSL_KEY_FILE": str(pki["client_key"]), "HUB_KAFKA__CONNECT_TIMEOUT_S": "2",
           "HUB_CLICKHOUSE__CONNECT_TIMEOUT_S": "2"}
    nowhere = f"http://127.0.0.1:{free_port()}"
    store = f"chdb://{tmp_path / 'store'}"
    runs = [
        (("config", "show"), 0), (("config", "show", "--format", "json"), 0), (("config", "check"), 0),
        (("run", "--clickhouse", nowhere), 1),  # no ClickHouse server there
        (("run", "--kafka", f"127.0.0.1:{free_port()}", "--clickhouse", store), 1),  # no broker there
        (("migrate", "--status", "--clickhouse", nowhere), 1), (("migrate", "--status", "--clickhouse", store), 0),
        (("query", "--clickhouse", nowhere, "SELECT 1"), 1), (("query", "--clickhouse", store, "SELECT 1"), 0),
    ]
    for args, code in runs:
        r = hub(*args, env=env, cwd=tmp_path)
        assert r.returncode == code, (args, r.stderr)
        assert not leaks(r.stdout + r.stderr, SECRETS), (args, leaks(r.stdout + r.stderr, SECRETS))
        if code:
            assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, (args, r.stderr)
    shown = hub("config", "show", "--format", "json", env=env, cwd=tmp_path).stdout
    masked = orjson.loads(shown)
    assert masked["clickhouse"]["password"] == masked["kafka"]["sasl_password"] == masked["kafka"]["ssl_key_password"] == "***"


# -- hub query ---------------------------------------------------------------------------------

def test_query_is_read_only_unless_write(chdb_dsn, capsys):
    assert main(["migrate", "--clickhouse", chdb_dsn]) == 0
    capsys.readouterr()
    assert main(["query", "--clickhouse", chdb_dsn, "DROP TABLE late_events"]) == 1
    err = capsys.readouterr().err
    assert "readonly" in err and "--write" in err and err.count("\n") == 1
    assert main(["query", "--clickhouse", chdb_dsn, "--format", "csv", "EXISTS TABLE late_events"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["1"]
    assert main(["query", "--clickhouse", chdb_dsn, "--write", "DROP TABLE late_events"]) == 0
    capsys.readouterr()
    assert main(["query", "--clickhouse", chdb_dsn, "--format", "csv", "EXISTS TABLE late_events"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["0"]


# -- ClickHouse: password and TLS on a real server ----------------------------------------------

class TlsProxy:
    """TLS in front of a plain-HTTP server, requiring a client certificate signed by the CA (chdb
    serves no HTTPS; ClickHouse servers in production terminate TLS themselves or behind one)."""

    def __init__(self, target_port: int, pki: dict[str, Path]) -> None:
        self.target_port = target_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki["server_cert"], pki["server_key"])
        self.context.load_verify_locations(pki["ca"])
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "the TLS proxy did not start"

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        server.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                w.close()

        await asyncio.gather(pump(client_r, up_w), pump(up_r, client_w))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def tls_clickhouse(tmp_path, pki) -> Iterator[str]:
    """https://127.0.0.1:PORT of a real ClickHouse server with user `hub` (password
    SECRETS[HUB_CLICKHOUSE__PASSWORD]), behind TLS that requires a client certificate."""
    import clickhouse_server as chserver  # scripts/, put on sys.path by conftest

    server = chserver.start(tmp_path / "ch", users={"hub": SECRETS["HUB_CLICKHOUSE__PASSWORD"]})
    proxy = TlsProxy(server.port, pki)
    try:
        yield f"https://127.0.0.1:{proxy.port}"
    finally:
        proxy.close()
        chserver.stop(server)


def test_clickhouse_password_and_tls_reach_the_server(tls_clickhouse, pki, tmp_path):
    secret_file = tmp_path / "ch-password"
    secret_file.write_text(SECRETS["HUB_CLICKHOUSE__PASSWORD"])
    tls = {"HUB_CLICKHOUSE__USERNAME": "hub", "HUB_CLICKHOUSE__CA_FILE": str(pki["ca"]),
           "HUB_CLICKHOUSE__CERT_FILE": str(pki["client_cert"]), "HUB_CLICKHOUSE__KEY_FILE": str(pki["client_key_plain"]),
           "HUB_CLICKHOUSE__CONNECT_TIMEOUT_S": "5"}
    good = {**tls, "HUB_CLICKHOUSE__PASSWORD_FILE": str(secret_file)}
    r = hub("query", "--clickhouse", tls_clickhouse, "--format", "csv", "SELECT currentUser() AS user", env=good)
    assert r.returncode == 0 and r.stdout.splitlines() == ["user", "hub"], r.stderr
    assert not leaks(r.stdout + r.stderr, SECRETS)

    failures = [
        ({**tls, "HUB_CLICKHOUSE__PASSWORD": "wrong-" + SECRETS["HUB_CLICKHOUSE__PASSWORD"]}, "Authentication failed"),
        ({**good, "HUB_CLICKHOUSE__CA_FILE": ""}, "CERTIFICATE_VERIFY_FAILED"),  # the system CAs do not know ours
        ({**good, "HUB_CLICKHOUSE__CERT_FILE": "", "HUB_CLICKHOUSE__KEY_FILE": ""}, "cannot connect to ClickHouse"),
    ]
    for env, message in failures:
        r = hub("query", "--clickhouse", tls_clickhouse, "SELECT 1", env=env)
        assert r.returncode == 1 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert not leaks(r.stdout + r.stderr, {**SECRETS, "wrong": "wrong-" + SECRETS["HUB_CLICKHOUSE__PASSWORD"]})
    # verify = false: no CA needed (test setups only).
    r = hub("query", "--clickhouse", tls_clickhouse, "SELECT 1", env={**good, "HUB_CLICKHOUSE__CA_FILE": "",
                                                                      "HUB_CLICKHOUSE__VERIFY": "false"})
    assert r.returncode == 0, r.stderr


# -- Kafka: SASL_SSL with client certificates on a real broker ---------------------------------

@pytest.fixture(scope="module")
def secure_broker(pki, tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """(bootstrap, admin client config) of a broker whose only listener is SASL_SSL with client
    certificates required; users `admin` and `hub` (password SECRETS[HUB_KAFKA__SASL_PASSWORD])."""
    admin = {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "admin",
             "sasl.password": "admin-secret", "ssl.ca.location": str(pki["ca"]),
             "ssl.certificate.location": str(pki["client_cert"]), "ssl.key.location": str(pki["client_key_plain"])}
    security = kafka_broker.Security(users={"admin": "admin-secret", "hub": SECRETS["HUB_KAFKA__SASL_PASSWORD"]},
                                     keystore=pki["keystore"], truststore=pki["ca"], client=admin)
    try:
        broker = kafka_broker.start(tmp_path_factory.mktemp("kafka-sasl"), security=security)
    except kafka_broker.BrokerError as exc:
        pytest.fail(f"SASL_SSL Kafka broker did not start: {exc}", pytrace=False)
    try:
        yield broker.bootstrap, {"bootstrap.servers": broker.bootstrap, **admin}
    finally:
        kafka_broker.stop(broker)


@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_sasl_ssl_settings_reach_source_sinks_and_admin_calls(secure_broker, pki, tmp_path):
    bootstrap, admin = secure_broker
    run = uuid.uuid4().hex[:8]
    topics = {"telemetry": f"s{run}.telemetry", "dead_letter": f"s{run}.dead-letters", "alerts": f"s{run}.alerts"}
    client = AdminClient(admin)  # held until the futures resolve
    for f in client.create_topics([NewTopic(t, 1, 1) for t in topics.values()]).values():
        f.result(30)
    producer = Producer(admin)
    start_ms = int(time.time() * 1000) - 600_000
    for i in range(200):
        producer.produce(topics["telemetry"], orjson.dumps({
            "event_type": "telemetry.request", "event_id": f"s-{i}", "event_time": start_ms + i,
            "source": "telemetry", "payload": {"model": "gpt-4o", "latency_ms": 100 + i}}))
    producer.produce(topics["telemetry"], b"{not json")
    assert producer.flush(30) == 0

    secret_file = tmp_path / "sasl-password"
    secret_file.write_text(SECRETS["HUB_KAFKA__SASL_PASSWORD"] + "\n")
    env = {"HUB_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "HUB_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
           "HUB_KAFKA__SASL_MECHANISM": "PLAIN", "HUB_KAFKA__SASL_USERNAME": "hub",
           "HUB_KAFKA__SASL_PASSWORD_FILE": str(secret_file), "HUB_KAFKA__SSL_CA_FILE": str(pki["ca"]),
           "HUB_KAFKA__SSL_CERT_FILE": str(pki["client_cert"]), "HUB_KAFKA__SSL_KEY_FILE": str(pki["client_key"]),
           "HUB_KAFKA__SSL_KEY_PASSWORD": KEY_PASSWORD, "HUB_KAFKA__CONNECT_TIMEOUT_S": "10",
           **{f"HUB_KAFKA__TOPICS__{s.upper()}": f"s{run}.{s}" for s in ("security", "cost", "governance", "registry", "policy")},
           **{f"HUB_KAFKA__TOPICS__{k.upper()}": t for k, t in topics.items()}}
    store = f"chdb://{tmp_path / 'store'}"
    r = hub("run", "--until-end", "--clickhouse", store, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not leaks(r.stdout + r.stderr, SECRETS)
    assert "Kafka client error" not in r.stderr, r.stderr
    r = hub("query", "--clickhouse", store, "--format", "csv", "SELECT count() FROM events", env=env)
    assert r.stdout.splitlines() == ["count()", "200"], r.stderr
    # The dead-letter producer wrote through the same settings.
    consumer = Consumer({**admin, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    consumer.subscribe([topics["dead_letter"]])
    with closing(consumer):
        record = wait_for(lambda: (m := consumer.poll(0.5)) is not None and m.error() is None and m, 30,
                          "the dead letter on its topic")
    assert orjson.loads(record.value())["offset"] == 200

    wrong = hub("run", "--until-end", "--clickhouse", store,
                env={**env, "HUB_KAFKA__SASL_PASSWORD_FILE": "", "HUB_KAFKA__SASL_PASSWORD": "wrong-password"})
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1, wrong.stderr
    assert "did not answer" in wrong.stderr and "SASL authentication error: Authentication failed" in wrong.stderr, wrong.stderr
    assert not leaks(wrong.stdout + wrong.stderr, {**SECRETS, "wrong": "wrong-password"})
