"""Debian's nginx, booted from the exact nginx.conf of the MEDIUM dev stack, in front of its five gateways.

Hosts (each its own network namespace, named as the containers): `nginx`, `api-gateway-1..5` and a
`client`. nginx runs Debian's binary as root, like the image, with the rendered /etc/nginx/nginx.conf
bound at its compiled-in path. The gateways are stub HTTP servers (Python's stdlib, below): each
answers with its own host name, speaks HTTP/1.1 keep-alive (closing idle sockets after 5 s, as Node's
http.Server does), answers a WebSocket upgrade with 101 and then echoes bytes, and logs every request
it sees (connection, Connection and Upgrade headers) to /srv/requests.log in its own root.

Stand-ins for the image's own machinery: the official image starts `nginx -g 'daemon off;'` through a
docker-entrypoint.sh whose /docker-entrypoint.d scripts only touch files the stack does not ship
(conf.d/default.conf, templates); nothing of it is needed, so nginx is started with the image's command.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.nginx.config import HEALTH_PATH, RESOLVE_SINCE
from testkit import unwrap
from testkit.netns import Host, Network, wait_until
from tests.helpers import env_of, uploads
from tests.servers.conftest import (
    container,
    install_uploads,
    rendered,
    report,
    require_binary,
    require_netns,
    server_versions,
)

pytestmark = pytest.mark.servers

TIER = "medium"
GATEWAYS = 5
CONF_PATH = "/etc/nginx/nginx.conf"
# Every client call is bounded, and generously: a failure shows up as an error, never as a hang.
CLIENT_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 120.0
# The outage bursts: at least 500 GETs, several in flight at once.
BURST_COUNT = 600
BURST_CONCURRENCY = 8

STUB = r'''
"""A gateway stand-in: names itself, keeps connections alive, upgrades to WebSocket and echoes."""
import base64
import hashlib
import itertools
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = socket.gethostname()
LOG = open("/srv/requests.log", "a", buffering=1)
LOCK = threading.Lock()
SERIAL = itertools.count(1)
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5  # Node's http.Server keepAliveTimeout: idle upstream sockets are closed after 5 s.

    def setup(self):
        super().setup()
        # Node's http.Server sets noDelay; without it Nagle and delayed ACKs add 40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn_id = f"{os.getpid()}-{next(SERIAL)}"

    def log_message(self, *args):
        pass

    def do_GET(self):
        entry = {"conn": self.conn_id, "peer": self.client_address[0], "path": self.path,
                 "connection": self.headers.get("Connection"), "upgrade": self.headers.get("Upgrade")}
        with LOCK:
            LOG.write(json.dumps(entry) + "\n")
        if (self.headers.get("Upgrade", "").lower() == "websocket"
                and "upgrade" in self.headers.get("Connection", "").lower()):
            self.upgrade()
            return
        body = json.dumps({"host": NAME, "conn": self.conn_id}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def upgrade(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("X-Gateway", NAME)
        self.end_headers()
        self.connection.settimeout(60)
        while True:
            data = self.rfile.read1(65536)
            if not data:
                break
            self.wfile.write(data)
        self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 511  # Node's listen backlog


server = Server(("0.0.0.0", int(sys.argv[1])), Handler)
open("/srv/ready", "w").close()
server.serve_forever()
'''

CLIENT = r'''
"""Bounded HTTP and WebSocket client calls; prints one JSON document."""
import base64
import hashlib
import http.client
import json
import os
import socket
import sys
import threading
import time

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def burst(host, port, path, count, concurrency, timeout):
    """`count` GETs over `concurrency` keep-alive client connections: [status, gateway, seconds, error]."""
    results = [None] * count
    todo = iter(range(count))
    lock = threading.Lock()

    def worker():
        conn = None
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                break
            start = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
                conn.request("GET", f"{path}{i}")
                resp = conn.getresponse()
                body = resp.read()
                gateway = None
                if resp.status == 200 and resp.getheader("Content-Type") == "application/json":
                    gateway = json.loads(body)["host"]
                results[i] = [resp.status, gateway, time.monotonic() - start, None, body.decode(errors="replace")]
                if resp.will_close:
                    conn.close()
                    conn = None
            except Exception as exc:
                results[i] = [None, None, time.monotonic() - start, repr(exc), ""]
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is not None:
            conn.close()

    began = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"results": results, "elapsed": time.monotonic() - began}


def wait(host, port, path, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return {"ready": True}
        except OSError:
            pass
        time.sleep(0.05)
    return {"ready": False}


def read_until(sock, marker, limit=65536):
    data = b""
    while marker not in data and len(data) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def websocket(host, port, timeout):
    key = base64.b64encode(os.urandom(16)).decode()
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head, _, rest = read_until(sock, b"\r\n\r\n").partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else None
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    if status != 101:
        sock.close()
        return {"status": status, "accept_ok": False, "gateway": None, "upgrade": None, "echoes": []}
    # One masked text frame; the stub echoes the bytes back through nginx's tunnel, twice in a row.
    payload = b"hello through nginx " + os.urandom(8).hex().encode()
    mask = os.urandom(4)
    frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    echoes = []
    for _ in range(2):
        sock.sendall(frame)
        got = rest
        rest = b""
        while len(got) < len(frame):
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
        echoes.append(got == frame)
    sock.close()
    return {"status": status, "accept_ok": headers.get("sec-websocket-accept") == expected,
            "gateway": headers.get("x-gateway"), "upgrade": headers.get("upgrade"), "echoes": echoes}


mode = sys.argv[1]
if mode == "burst":
    out = burst(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7]))
elif mode == "wait":
    out = wait(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
else:
    out = websocket(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
print(json.dumps(out))
'''


@dataclass
class Burst:
    """One bounded burst of GETs as the client saw it."""

    results: list[list[Any]]
    elapsed_s: float

    @property
    def failed(self) -> list[list[Any]]:
        return [r for r in self.results if r[0] != 200]

    @property
    def by_gateway(self) -> Counter[str]:
        return Counter(r[1] for r in self.results if r[0] == 200 and r[1])

    def percentile_ms(self, q: float) -> float:
        latencies = sorted(float(r[2]) for r in self.results)
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]


@dataclass
class Cluster:
    nginx: Host
    gateways: dict[str, Host]
    client: Host
    conf: str
    nginx_bin: str
    binds: tuple[str, ...]
    listen_port: int
    gateway_port: int

    def start_gateway(self, name: str) -> None:
        host = self.gateways[name]
        host.path("/srv/ready").unlink(missing_ok=True)
        host.spawn([sys.executable, "/srv/stub.py", str(self.gateway_port)], binds=["/srv"])
        wait_until(host.path("/srv/ready").exists, timeout=30, what=f"{name} stub listening")

    def client_json(self, *args: object) -> Any:
        done = self.client.run([sys.executable, "/srv/client.py", *map(str, args)], binds=["/srv"],
                               timeout=RUN_TIMEOUT_S)
        return json.loads(done.stdout)

    def burst(self, path: str, count: int, concurrency: int) -> Burst:
        out = self.client_json("burst", "nginx", self.listen_port, path, count, concurrency, CLIENT_TIMEOUT_S)
        return Burst(results=out["results"], elapsed_s=out["elapsed"])

    def upstream_tries(self, path_prefix: str) -> list[list[str]]:
        """For each request nginx logged under `path_prefix`, the upstream addresses it tried, in order."""
        log = (self.nginx.root / "nginx.log").read_text()
        pattern = re.compile(rf'"GET {re.escape(path_prefix)}\S* HTTP/1\.1" \d+ .* ua="([^"]*)"')
        return [[a.strip() for a in m.group(1).split(",")] for m in pattern.finditer(log)]

    def seen(self, name: str, path_prefix: str) -> list[dict[str, Any]]:
        """The requests a gateway stub logged whose path starts with `path_prefix`."""
        log = self.gateways[name].path("/srv/requests.log")
        if not log.exists():
            return []
        entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        return [e for e in entries if e["path"].startswith(path_prefix)]


def nginx_binds(nginx_bin: str) -> tuple[str, ...]:
    """The directories Debian's build writes to (`nginx -V`): conf, pid, logs and temp paths.

    The lock path is left out: nginx uses no lock file where it has atomic operations (Linux), and
    Debian's /var/lock is a symlink into /run.
    """
    out = subprocess.run([nginx_bin, "-V"], capture_output=True, text=True, check=True, timeout=30)
    dirs = {"/etc/nginx"}
    for key, value in re.findall(r"--([a-z-]+-path)=(\S+)", out.stdout + out.stderr):
        if key in {"conf-path", "pid-path", "http-log-path"} or key.endswith("-temp-path"):
            dirs.add(str(Path(value).parent))
    return tuple(sorted(dirs))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_netns()
    nginx_bin = require_binary("nginx", "/usr/sbin/nginx")
    rendering = rendered(TIER)
    lb = container(rendering, "nginx")
    shipped = uploads(lb)
    assert set(shipped) == {CONF_PATH}, f"nginx ships {sorted(shipped)}"
    conf = shipped[CONF_PATH][0]
    listen_port = int(unwrap(lb.inputs)["ports"][0]["internal"])
    gateway_names = sorted(
        (c.plain_inputs["hostname"] for c in rendering.of_type("docker:index/container:Container")
         if re.fullmatch(r"api-gateway-\d+", c.plain_inputs["hostname"])),
        key=lambda n: int(n.rsplit("-", 1)[1]),
    )
    assert len(gateway_names) == GATEWAYS, gateway_names
    ports = {int(env_of(container(rendering, n))["PORT"]) for n in gateway_names}
    assert len(ports) == 1, ports
    gateway_port = ports.pop()

    workdir = tmp_path_factory.mktemp("nginx")
    for d in (workdir, *workdir.parents):
        if d == Path("/tmp"):
            break
        d.chmod(d.stat().st_mode | 0o055)
    with Network(workdir, "ngx") as net:
        nginx = net.add("nginx")
        gateways = {n: net.add(n) for n in gateway_names}
        client = net.add("client")
        c = Cluster(nginx=nginx, gateways=gateways, client=client, conf=conf, nginx_bin=nginx_bin,
                    binds=nginx_binds(nginx_bin), listen_port=listen_port, gateway_port=gateway_port)
        client.write("/srv/client.py", CLIENT)
        for name, host in gateways.items():
            host.write("/srv/stub.py", STUB)
            c.start_gateway(name)
        install_uploads(nginx, lb)
        # The image's command: master as root in the foreground.
        nginx.spawn([nginx_bin, "-g", "daemon off;"], binds=c.binds, log=nginx.root / "nginx.log")
        ready = c.client_json("wait", "nginx", listen_port, HEALTH_PATH, 30)
        assert ready["ready"], (nginx.root / "nginx.log").read_text()
        yield c


def test_nginx_accepts_the_exact_rendered_file(cluster: Cluster) -> None:
    """`nginx -t` in the nginx host, where every gateway name resolves, on the bytes the stack uploads."""
    on_host = cluster.nginx.run(["cat", CONF_PATH], binds=cluster.binds).stdout
    assert on_host == cluster.conf
    done = cluster.nginx.run([cluster.nginx_bin, "-t"], binds=cluster.binds, check=False)
    assert done.returncode == 0, done.stderr
    assert f"configuration file {CONF_PATH} test is successful" in done.stderr
    # The version gate: `server ... resolve` only where this nginx (named by the image tag) has it.
    version = server_versions().nginx
    assert version is not None
    has_resolve = tuple(int(p) for p in version.split(".")) >= RESOLVE_SINCE
    assert (" resolve;" in cluster.conf) == has_resolve
    assert all(f"server {n}:{cluster.gateway_port} " in cluster.conf for n in cluster.gateways)
    report(f"nginx {version} (medium): `nginx -t` ok on the rendered {CONF_PATH}, "
           f"{len(cluster.gateways)} upstreams, resolve={'on' if has_resolve else 'off'}")


def test_requests_spread_over_every_gateway(cluster: Cluster) -> None:
    burst = cluster.burst("/spread/", 250, 4)
    assert not burst.failed, burst.failed[:5]
    share = burst.by_gateway
    assert set(share) == set(cluster.gateways), share
    fair = len(burst.results) / len(cluster.gateways)
    assert min(share.values()) >= fair / 4, share
    dist = ", ".join(f"{n}={share[n]}" for n in cluster.gateways)
    report(f"nginx medium: {len(burst.results)} GETs (concurrency 4) over {len(share)} gateways: {dist}")


def test_plain_requests_keep_upstream_connections_and_send_no_connection_header(cluster: Cluster) -> None:
    prefix = f"/keepalive-{uuid.uuid4().hex[:8]}/"
    burst = cluster.burst(prefix, 250, 4)
    assert not burst.failed, burst.failed[:5]
    rows = []
    total_conns = 0
    for name in cluster.gateways:
        seen = cluster.seen(name, prefix)
        assert seen, f"{name} saw none of the requests"
        assert all(e["peer"] == cluster.nginx.ip for e in seen)
        assert [e["connection"] for e in seen if e["connection"] is not None] == [], name
        assert all(e["upgrade"] is None for e in seen), name
        conns = len({e["conn"] for e in seen})
        total_conns += conns
        rows.append(f"{name} {conns} conn/{len(seen)} req")
        # Reuse, not one connection per request: each upstream connection carried several requests.
        assert conns * 3 <= len(seen), rows
    assert sum(len(cluster.seen(n, prefix)) for n in cluster.gateways) == len(burst.results)
    report(f"nginx medium: upstream keep-alive, {total_conns} upstream connections for {len(burst.results)} "
           f"requests, no Connection header on any: {'; '.join(rows)}")


def test_websocket_upgrade_passes_through(cluster: Cluster) -> None:
    ws = cluster.client_json("ws", "nginx", cluster.listen_port, CLIENT_TIMEOUT_S)
    assert ws["status"] == 101, ws
    assert ws["accept_ok"], ws
    assert ws["upgrade"] and ws["upgrade"].lower() == "websocket", ws
    assert ws["echoes"] == [True, True], ws
    seen = [e for n in cluster.gateways for e in cluster.seen(n, "/ws")]
    assert seen, "no gateway saw the upgrade request"
    upgrade = seen[-1]
    assert upgrade["upgrade"].lower() == "websocket"
    assert upgrade["connection"].lower() == "upgrade"
    report(f"nginx medium: WebSocket upgrade via {ws['gateway']}: 101, accept key ok, 2 frames echoed")


def _outage_report(cluster: Cluster, what: str, victim: str, before: Burst, after: Burst, prefix: str) -> int:
    victim_addr = f"{cluster.gateways[victim].ip}:{cluster.gateway_port}"
    # nginx logs a request just after answering it: wait (bounded) for the last lines.
    wait_until(lambda: len(cluster.upstream_tries(prefix)) >= len(after.results), timeout=10,
               what="every request of the burst in nginx's access log")
    tries = cluster.upstream_tries(prefix)
    retried = sum(1 for t in tries if len(t) > 1 and victim_addr in t[:-1])
    report(
        f"nginx medium: {victim} {what}, {len(after.results)} GETs (concurrency {BURST_CONCURRENCY}): "
        f"{len(after.failed)} failed, {retried} retried from {victim} on another gateway; "
        f"p50 {before.percentile_ms(0.5):.1f} -> {after.percentile_ms(0.5):.1f} ms, "
        f"p99 {before.percentile_ms(0.99):.1f} -> {after.percentile_ms(0.99):.1f} ms, "
        f"max {before.percentile_ms(1):.1f} -> {after.percentile_ms(1):.1f} ms; "
        f"served by {dict(sorted(after.by_gateway.items()))}"
    )
    return retried


def test_one_gateway_down_loses_no_requests(cluster: Cluster) -> None:
    """A crashed gateway (its processes killed): connects are refused, and nginx retries elsewhere."""
    before = cluster.burst("/baseline/", BURST_COUNT, BURST_CONCURRENCY)
    assert not before.failed, before.failed[:5]
    victim = "api-gateway-3"
    cluster.gateways[victim].kill_all()
    try:
        after = cluster.burst("/one-down/", BURST_COUNT, BURST_CONCURRENCY)
    finally:
        cluster.start_gateway(victim)
    retried = _outage_report(cluster, "killed", victim, before, after, "/one-down/")
    assert not after.failed, after.failed[:5]
    assert victim not in after.by_gateway
    assert set(after.by_gateway) == set(cluster.gateways) - {victim}, after.by_gateway
    # The outage was met, not dodged: nginx did pick the dead gateway and retried those requests.
    assert retried >= 1


def test_stopped_gateway_off_the_network_loses_no_requests(cluster: Cluster) -> None:
    """`docker stop`: the gateway's processes end (its sockets close), then its address leaves the network,
    so a connect gets no answer at all (no refusal) until ARP gives up or proxy_connect_timeout fires."""
    before = cluster.burst("/baseline-2/", BURST_COUNT, BURST_CONCURRENCY)
    assert not before.failed, before.failed[:5]
    victim = "api-gateway-2"
    host = cluster.gateways[victim]
    link = host.run(["ip", "-o", "-4", "addr", "show", "to", host.ip]).stdout.split()[1]
    host.kill_all()
    host.run(["ip", "link", "set", link, "down"])
    try:
        after = cluster.burst("/gone/", BURST_COUNT, BURST_CONCURRENCY)
    finally:
        host.run(["ip", "link", "set", link, "up"])
        cluster.start_gateway(victim)
    retried = _outage_report(cluster, "stopped and off the network", victim, before, after, "/gone/")
    assert not after.failed, after.failed[:5]
    assert victim not in after.by_gateway
    assert retried >= 1


def test_health_answers_without_any_gateway(cluster: Cluster) -> None:
    """nginx answers its own health check: no gateway sees it, and it holds with every gateway down."""
    up = cluster.burst(HEALTH_PATH + "?", 10, 2)
    assert [r[0] for r in up.results] == [200] * 10, up.results[:3]
    assert not [e for n in cluster.gateways for e in cluster.seen(n, HEALTH_PATH)]
    for host in cluster.gateways.values():
        host.kill_all()
    try:
        health = cluster.burst(HEALTH_PATH + "?", 20, 2)
        proxied = cluster.burst("/all-down/", 3, 1)
    finally:
        for name in cluster.gateways:
            cluster.start_gateway(name)
    assert [r[0] for r in health.results] == [200] * 20, health.results[:3]
    assert {r[4] for r in health.results} == {"ok\n"}
    # The gateways really are gone: a proxied request fails (502 after the retries).
    assert {r[0] for r in proxied.results} == {502}, proxied.results
    report(f"nginx medium: {HEALTH_PATH} 200 x{len(health.results)} with all gateways down "
           f"(p99 {health.percentile_ms(0.99):.1f} ms); a proxied GET got 502")

