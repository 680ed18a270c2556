"""WS4REDIS_CONNECTION: every accepted form parsed into one config, and real connections over a
unix socket and over TLS shared by the hub and RedisPublisher."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import wait_for
from redis.sentinel import SentinelConnectionPool
from redis_server import RedisServer, free_port
from redis_topologies import find_redis7

from ws4redis_gevent.connection import (
    ConnectionConfig,
    make_pool,
    parse_connection,
)
from ws4redis_gevent.exceptions import ImproperlyConfigured
from ws4redis_gevent.publisher import RedisPublisher
from ws4redis_gevent.redis_store import connection_pool, redis_client
from ws4redis_gevent.settings import Settings

# --- parsing ------------------------------------------------------------------------------------


def test_url_and_dict_of_one_server_are_the_same_settings():
    by_url = parse_connection("redis://localhost:6379/2")
    by_dict = parse_connection({"host": "localhost", "port": 6379, "db": 2})
    assert by_url == by_dict
    assert by_url.key == by_dict.key
    assert by_url.mode == "single" and by_url.publish_command == "PUBLISH"


def test_empty_dict_is_redis_defaults():
    config = parse_connection({})
    assert config == ConnectionConfig("single", {})


def test_rediss_url_turns_tls_on_and_types_its_options():
    config = parse_connection(
        "rediss://:secret@cache.example:6380/1"
        "?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required&ssl_check_hostname=false"
    )
    assert config.options == {
        "host": "cache.example",
        "port": 6380,
        "db": 1,
        "password": "secret",
        "ssl": True,
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": False,
    }


def test_unix_url_gives_the_socket_path():
    config = parse_connection("unix:///run/redis/redis.sock?db=3")
    assert config.options == {"unix_socket_path": "/run/redis/redis.sock", "db": 3}


def test_dict_with_url_adds_options_to_it():
    config = parse_connection({"url": "redis://h:1/0", "socket_timeout": 2.5})
    assert config.options == {"host": "h", "port": 1, "db": 0, "socket_timeout": 2.5}


def test_sentinel_url_and_dict_are_the_same_settings():
    by_url = parse_connection("redis+sentinel://:pw@s1:5000,s2,[::1]:5002/mymaster/4")
    by_dict = parse_connection(
        {
            "sentinels": [["s1", 5000], ("s2", 26379), "[::1]:5002"],
            "service_name": "mymaster",
            "db": 4,
            "password": "pw",
        }
    )
    assert by_url == by_dict
    assert by_url.mode == "sentinel"
    assert by_url.sentinels == (("s1", 5000), ("s2", 26379), ("::1", 5002))
    assert by_url.service_name == "mymaster"
    assert by_url.options == {"db": 4, "password": "pw"}


def test_rediss_sentinel_url_uses_tls_to_the_master():
    config = parse_connection("rediss+sentinel://s1/main?ssl_ca_certs=/ca.pem")
    assert config.options == {"ssl": True, "ssl_ca_certs": "/ca.pem"}


def test_sentinel_options_for_the_sentinels_themselves_are_kept_apart():
    config = parse_connection(
        {"sentinels": [("s", 1)], "service_name": "m", "sentinel_kwargs": {"password": "x"}}
    )
    assert config.sentinel_options == {"password": "x"}
    assert config.options == {}


def test_cluster_url_and_dict_are_the_same_settings():
    by_url = parse_connection("redis+cluster://u:pw@n1:7000,n2:7001")
    by_dict = parse_connection(
        {"cluster": True, "startup_nodes": [("n1", 7000), ("n2", 7001)],
         "username": "u", "password": "pw"}
    )  # fmt: skip
    assert by_url == by_dict
    assert by_url.cluster and by_url.publish_command == "SPUBLISH"
    assert by_url.nodes == (("n1", 7000), ("n2", 7001))


def test_cluster_flag_with_a_plain_url_is_a_cluster():
    config = parse_connection({"url": "rediss://n:7000", "cluster": True})
    assert config.cluster and config.nodes == (("n", 7000),)
    assert config.options == {"ssl": True}


def test_ipv6_addresses_with_and_without_port():
    config = parse_connection({"sentinels": ["[::1]", "[::1]:5000"], "service_name": "m"})
    assert config.sentinels == (("::1", 26379), ("::1", 5000))


def test_cluster_dict_with_host_and_port_starts_from_that_node():
    config = parse_connection({"cluster": True, "host": "n", "port": 7000, "ssl": True})
    assert config.nodes == (("n", 7000),)
    assert config.options == {"ssl": True}


def scaling_samples() -> dict[str, list[object]]:
    """docs/scaling.rst's samples marked ``.. tested-scaling: NAME``: for each NAME, the values
    its alternatives (separated by ``# or``) assign to WS4REDIS_CONNECTION."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "scaling.rst").read_text()
    found = {}
    for part in text.split(".. tested-scaling: ")[1:]:
        name, rest = part.split("\n", 1)
        block = rest.split(".. code-block:: python\n", 1)[1]
        lines = []
        for line in block.splitlines()[1:]:
            if line and not line.startswith("    "):
                break
            lines.append(line[4:])
        values = []
        for alternative in "\n".join(lines).split("# or\n"):
            namespace: dict[str, object] = {}
            exec(alternative, namespace)
            values.append(namespace["WS4REDIS_CONNECTION"])
        found[name.strip()] = values
    return found


def test_scaling_doc_samples_parse_to_their_topology():
    """Each connection sample of docs/scaling.rst is accepted, and where it gives a URL and a
    dict, both name the same servers."""
    samples = scaling_samples()
    assert sorted(samples) == ["cluster", "sentinel", "single"]
    (single,) = [parse_connection(value) for value in samples["single"]]
    assert single.mode == "single"
    assert (single.options["host"], single.options["port"]) == ("redis.internal", 6379)
    by_dict, by_url = [parse_connection(value) for value in samples["sentinel"]]
    assert by_dict.mode == by_url.mode == "sentinel"
    assert by_dict.service_name == by_url.service_name == "mymaster"
    assert (
        by_dict.sentinels[:2] == by_url.sentinels == (("sentinel-1", 26379), ("sentinel-2", 26379))
    )
    assert by_dict.options["password"] == "for the master"
    assert by_dict.sentinel_options == {"password": "for sentinels"}
    by_dict, by_url = [parse_connection(value) for value in samples["cluster"]]
    assert by_dict.mode == by_url.mode == "cluster"
    assert by_dict.nodes == by_url.nodes == (("node-1", 7000), ("node-2", 7000))


@pytest.mark.parametrize(
    "connection, message",
    [
        ("http://localhost", "unsupported scheme"),
        ("localhost:6379", "is not a URL"),
        ("redis+sentinel://s1:26379", "service name is missing"),
        ({"sentinels": [("s", 1)]}, "needs a service_name"),
        ({"sentinels": []}, "lists no Sentinel"),
        ({"sentinels": ["s:port"], "service_name": "m"}, "bad address 's:port'"),
        ("redis+cluster://n1:7000/1", "database 0 only"),
        ("unix+cluster:///tmp/x", "is not supported: use redis"),
        ("redis://localhost/0?socket_timeout=soon", "Invalid value for .socket_timeout."),
        (42, "must be a dict or a URL"),
    ],
)
def test_bad_settings_are_improperly_configured(connection, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        parse_connection(connection)


def test_sentinel_pool_follows_the_master_and_waits_for_a_free_connection():
    pool = make_pool(parse_connection("redis+sentinel://127.0.0.1:1/mymaster"))
    assert isinstance(pool, SentinelConnectionPool)
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert pool.max_connections == 50
    pool.disconnect()


def test_cluster_has_no_single_pool():
    with pytest.raises(ImproperlyConfigured, match="no single connection pool"):
        make_pool(parse_connection("redis+cluster://127.0.0.1:1"))


def test_unreachable_cluster_is_a_connection_error():
    """Like a single server that is down, for the callers that handle redis.ConnectionError."""
    with pytest.raises(redis.ConnectionError):
        redis_client(f"redis+cluster://127.0.0.1:{free_port()}")


def test_one_pool_per_process_for_equivalent_settings(redis_url):
    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    assert connection_pool(redis_url) is connection_pool({"host": host, "port": int(port), "db": 0})


# --- real connections -----------------------------------------------------------------------------


def _deliver_through_server(start_server, hub_connection, publisher_connection) -> None:
    """A websocket served with ``hub_connection`` receives what RedisPublisher publishes with
    ``publisher_connection``, and persisted messages come back from the same Redis."""
    server = start_server(connection=hub_connection)
    settings = Settings(connection=publisher_connection)
    publisher = RedisPublisher(facility="conn", broadcast=True, settings=settings)
    with server.connect("/ws/conn?subscribe-broadcast") as ws:
        wait_for(lambda: server.stats()["channels"].get("broadcast:conn") == 1)
        assert publisher.publish_message("over the wire") == 1
        assert ws.recv(timeout=5) == "over the wire"
    with server.connect("/ws/conn?subscribe-broadcast") as ws:
        assert ws.recv(timeout=5) == "over the wire"  # persisted on the same server


@pytest.fixture
def unix_socket_server() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="ws4r-sock-")  # short: socket paths are limited
    path = os.path.join(directory, "redis.sock")
    server = RedisServer(args=["--unixsocket", path, "--unixsocketperm", "700"]).start()
    try:
        yield path
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_unix_socket_by_url_and_by_dict(start_server, unix_socket_server):
    _deliver_through_server(
        start_server,
        hub_connection=f"unix://{unix_socket_server}?db=0",
        publisher_connection={"unix_socket_path": unix_socket_server},
    )


def _make_certificates(directory: Path) -> dict[str, str]:
    """A CA and a server certificate for 127.0.0.1, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the TLS test needs the openssl command")
    files = {name: str(directory / name) for name in ("ca.key", "ca.crt", "key", "crt", "csr")}
    ext = directory / "ext"
    # Python 3.13's default context verifies strictly (VERIFY_X509_STRICT): the CA needs its
    # key usage, the server certificate an authority key identifier.
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nauthorityKeyIdentifier=keyid\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    commands = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", files["ca.key"],
         "-out", files["ca.crt"], "-days", "1", "-subj", "/CN=ws4redis test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", files["key"], "-out", files["csr"],
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", files["csr"], "-CA", files["ca.crt"], "-CAkey", files["ca.key"],
         "-CAcreateserial", "-out", files["crt"], "-days", "1", "-extfile", str(ext)],
    ]  # fmt: skip
    for command in commands:
        subprocess.run(["openssl", *command], check=True, capture_output=True, timeout=30)
    return files


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A redis-server listening with TLS only on its TLS port (the plain one is for the fixture's
    own health check); yields (TLS port, CA file)."""
    binary = find_redis7()
    if binary is None:
        pytest.skip("the TLS test needs a redis-server built with TLS (Debian's redis-server)")
    files = _make_certificates(tmp_path)
    tls_port = free_port()
    server = RedisServer(
        binary,
        ["--tls-port", str(tls_port), "--tls-cert-file", files["crt"],
         "--tls-key-file", files["key"], "--tls-ca-cert-file", files["ca.crt"],
         "--tls-auth-clients", "no"],
    ).start()  # fmt: skip
    try:
        yield tls_port, files["ca.crt"]
    finally:
        server.stop()


def test_tls_by_rediss_url_and_by_dict(start_server, tls_server):
    port, ca = tls_server
    _deliver_through_server(
        start_server,
        hub_connection=f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required",
        publisher_connection={"host": "127.0.0.1", "port": port, "ssl": True, "ssl_ca_certs": ca},
    )


def test_tls_certificate_is_verified(tls_server):
    """Without our CA the server's certificate is refused: the connection really is TLS."""
    port, _ = tls_server
    client = redis_client(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required")
    with pytest.raises(redis.ConnectionError) as failure:
        client.ping()
    assert isinstance(failure.value.__context__, ssl.SSLError) or "certificate" in str(
        failure.value
    )
