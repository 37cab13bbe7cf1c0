"""RabbitMQ, medium tier (3 nodes), on Debian's rabbitmq-server, booted from the exact files the dev stack ships.

Each node is a host named as its container (`rabbitmq-N`, node `rabbit@rabbitmq-N` from its environment) with
its own network namespace (and so its own epmd), its own /var/lib/rabbitmq (HOME, Mnesia, cookie) and
/var/log/rabbitmq, and the rendered uploads (rabbitmq.conf, enabled_plugins, the cookie entrypoint) at their
container paths. The nodes start together with the container's entrypoint, command and environment; nothing
joins them by hand.

Nothing of the official image's machinery is stood in: the nodes run banyan's own entrypoint, which writes the
cookie, drops to the rabbitmq user (setpriv here, gosu or su-exec in the official images), reconciles the
administrator and the applications' user at every start, and execs RabbitMQ's own `rabbitmq-server` (the
PATH finds RabbitMQ's scripts first, as the official image's /opt/rabbitmq/sbin; Debian's /usr/sbin wrappers
would redirect the node's output to files). A node is ready when its rendered health check passes, as Docker
decides it, and that check authenticates as the applications.

The AMQP clients (publisher, consumer, logins) run inside a service container's host (`python -m` this module),
with the URLs and admin credentials of that container's RABBITMQ_URLS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from benchmarks import amqp_client
from testkit import netns
from tests.helpers import env_of
from tests.servers.conftest import (
    install_uploads,
    rendered,
    report,
    require_binary,
    require_netns,
    server_versions,
)

pytestmark = pytest.mark.servers

TIER = "medium"
DATA_DIR = "/var/lib/rabbitmq"
LOG_DIR = "/var/log/rabbitmq"
REPO = Path(__file__).resolve().parents[2]
# What a node's container has of its own: the uploads, its data volume (HOME, Mnesia, the cookie) and logs.
NODE_BINDS = ("/etc/rabbitmq", "/usr/local/bin", DATA_DIR, LOG_DIR)
MESSAGES = 10_000
PUBLISH_RATE = 2_500  # messages/s: paced so the leader is stopped while publishing, however fast the machine
STOP_AT = 4_000  # confirmed messages when the leader is stopped
WINDOW = 500  # unconfirmed messages in flight
PREFETCH = 100
# Refused at login, not a network failure, and not "guest can only connect via localhost" (a user that exists).
PLAIN_REFUSED = "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN"


def _scripts_dir() -> Path:
    """Where RabbitMQ's own scripts live (rabbitmq-server, rabbitmqctl), not Debian's /usr/sbin wrappers."""
    found = require_binary("/usr/lib/rabbitmq/bin/rabbitmq-server",
                           "/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server")
    return Path(found).parent


def _version() -> tuple[int, int]:
    installed = server_versions().rabbitmq
    assert installed, "rabbitmq-server's version is unknown (dpkg-query)"
    major, minor = installed.split(".")[:2]
    return int(major), int(minor)


@dataclass
class Cluster:
    nodes: dict[str, netns.Host]  # container name -> host
    node_env: dict[str, dict[str, str]]
    client: netns.Host  # a service container's host
    client_env: dict[str, str]
    scripts: Path
    workdir: Path
    health: dict[str, str]  # container name -> its rendered health check (CMD-SHELL)

    @property
    def urls(self) -> dict[str, str]:
        """Host name -> AMQP URL with the applications' credentials, from the service container's RABBITMQ_URLS."""
        return {urlsplit(u).hostname or "": u for u in self.client_env["RABBITMQ_URLS"].split(",")}

    def ctl_json(self, node: str, *args: str) -> Any:
        """rabbitmqctl's JSON output (anything it prints before the document, such as a warning, is skipped)."""
        out = self.ctl(node, *args, "--formatter", "json")
        starts = [i for i in (out.find("["), out.find("{")) if i >= 0]
        assert starts, f"rabbitmqctl {' '.join(args)} printed no JSON: {out!r}"
        return json.loads(out[min(starts):])

    def ctl(self, node: str, *args: str) -> str:
        """rabbitmqctl inside a node's namespace, as the rabbitmq user with the node's HOME (and so its cookie)."""
        host = self.nodes[node]
        done = host.run([str(self.scripts / "rabbitmqctl"), "-q", *args], user="rabbitmq",
                        binds=["/etc/rabbitmq", DATA_DIR],
                        env={"HOME": DATA_DIR, "RABBITMQ_NODENAME": self.node_env[node]["RABBITMQ_NODENAME"]},
                        timeout=60)
        return done.stdout

    def queues(self, node: str) -> dict[str, dict[str, Any]]:
        return {q["name"]: q for q in self.ctl_json(node, "list_queues", "name", "type", "leader", "members")}

    def client_run(self, args: dict[str, Any], *, on: netns.Host | None = None,
                   timeout: float = 60) -> dict[str, Any]:
        done = (on or self.client).run(_client_argv(args), env=_client_env(), timeout=timeout)
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    def logs(self) -> str:
        tails = []
        for name, host in self.nodes.items():
            log = host.root / "node.log"
            text = log.read_text(errors="replace") if log.exists() else "(no log)"
            tails.append(f"--- {name} ---\n" + "\n".join(text.splitlines()[-25:]))
        return "\n".join(tails)


def _client_argv(args: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "tests.servers.test_rabbitmq_servers", json.dumps(args)]


def _client_env() -> dict[str, str]:
    return {"PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_netns()
    scripts = _scripts_dir()
    require_binary("setpriv")
    rendering = rendered(TIER)
    nodes = sorted((c for c in rendering.of_type("docker:index/container:Container")
                    if "RABBITMQ_NODENAME" in env_of(c)), key=lambda c: str(c.plain_inputs["hostname"]))
    assert len(nodes) == 3, f"the {TIER} tier renders {len(nodes)} RabbitMQ nodes, not 3"
    services = sorted((c for c in rendering.of_type("docker:index/container:Container")
                       if "RABBITMQ_PREFETCH" in env_of(c)), key=lambda c: str(c.plain_inputs["hostname"]))
    assert services, "no service container with RABBITMQ_URLS"
    service = services[0]
    workdir = netns.traversable(tmp_path_factory.mktemp("rabbitmq"))
    path = f"{scripts}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    with netns.Network(workdir, "mq") as net:
        hosts: dict[str, netns.Host] = {}
        node_env: dict[str, dict[str, str]] = {}
        for c in nodes:
            name = str(c.plain_inputs["hostname"])
            host = hosts[name] = net.add(name)
            node_env[name] = env_of(c)
            install_uploads(host, c)
            for d in (DATA_DIR, LOG_DIR):  # the image's directories (and a fresh volume) belong to rabbitmq
                host.path(d).mkdir(parents=True, exist_ok=True)
                shutil.chown(host.path(d), "rabbitmq", "rabbitmq")
        client = net.add(str(service.plain_inputs["hostname"]))
        cl = Cluster(nodes=hosts, node_env=node_env, client=client, client_env=env_of(service), scripts=scripts,
                     workdir=workdir, health={str(c.plain_inputs["hostname"]): c.plain_inputs["healthcheck"]["tests"][1]
                                              for c in nodes})

        start = time.monotonic()
        for c in nodes:  # all together, as `pulumi up` creates them: no start order, no join commands
            name = str(c.plain_inputs["hostname"])
            inputs = c.plain_inputs
            argv = [*inputs["entrypoints"], *inputs["command"]]
            hosts[name].spawn(argv, binds=[*NODE_BINDS],
                              env={**node_env[name], "HOME": DATA_DIR, "PATH": path},
                              log=hosts[name].root / "node.log")
        ports = [f"{h}:{urlsplit(u).port}" for h, u in cl.urls.items()]
        assert sorted(h.split(":")[0] for h in ports) == sorted(hosts), "RABBITMQ_URLS does not name every node"

        def listening() -> bool:
            dead = [name for name, host in hosts.items() if any(p.poll() is not None for p in host.procs)]
            if dead:
                raise AssertionError(f"{', '.join(dead)} exited while booting")
            return client.run(_client_argv({"mode": "probe", "targets": ports}), env=_client_env(),
                              check=False).returncode == 0

        def healthy() -> bool:
            """Every node's rendered health check passes (run as Docker runs it: sh -c, as root)."""
            listening()
            return all(host.run(["env", "-i", *(f"{k}={v}" for k, v in sorted(
                           {**node_env[name], "HOME": DATA_DIR, "PATH": path}.items())),
                                 "sh", "-c", cl.health[name]], binds=[*NODE_BINDS], check=False,
                                timeout=60).returncode == 0
                       for name, host in hosts.items())

        try:
            netns.wait_until(listening, timeout=120, what="every node's AMQP listener", interval=0.5)
            netns.wait_until(healthy, timeout=180, what="every node's health check (it logs in as the apps)",
                             interval=1.0)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{cl.logs()}") from None
        report(f"rabbitmq {server_versions().rabbitmq} ({TIER}, 3 nodes): all nodes booted, clustered, their users "
               f"reconciled and healthy {time.monotonic() - start:.1f}s after a simultaneous start")
        yield cl


def test_nodes_form_one_cluster_by_themselves(cluster: Cluster) -> None:
    """Classic-config peer discovery from rabbitmq.conf alone: three nodes started together are one cluster."""
    names = {e["RABBITMQ_NODENAME"] for e in cluster.node_env.values()}
    status = cluster.ctl_json("rabbitmq-3", "cluster_status")
    assert set(status["running_nodes"]) == names, status
    assert set(status["disk_nodes"]) == names, status
    assert not status.get("partitions"), status


def test_default_queue_type_matches_the_server_version(cluster: Cluster) -> None:
    """3.13+ reads the node-wide default_queue_type (quorum); 3.10-3.12 have none, so the default stays classic.
    The environment contract tells the services the same type the server actually gives them."""
    expected = "quorum" if _version() >= (3, 13) else "classic"
    result = cluster.client_run({"mode": "declare", "url": cluster.urls["rabbitmq-2"], "queue": "banyan-default",
                                 "arguments": {}})
    assert result["ok"], result
    queue = cluster.queues("rabbitmq-2")["banyan-default"]
    assert queue["type"] == expected, (
        f"a durable queue declared without x-queue-type on RabbitMQ {server_versions().rabbitmq} is "
        f"{queue['type']}, expected {expected}")
    assert cluster.client_env["RABBITMQ_DEFAULT_QUEUE_TYPE"] == expected
    if expected == "classic":
        report(f"rabbitmq {server_versions().rabbitmq}: no node-wide default_queue_type before 3.13, so a queue "
               "declared without x-queue-type is classic (quorum needs it explicitly)")


def test_guest_is_refused_and_the_apps_and_the_admin_log_in(cluster: Cluster) -> None:
    """The applications' user (the services' RABBITMQ_URLS) and the admin log in on every node; guest/guest is
    refused at login (AMQP PLAIN), from another host and on the node itself, where loopback_users would let an
    existing guest in: there is none."""
    env = cluster.node_env["rabbitmq-1"]
    admin_urls = [u.replace(f"{env['BANYAN_RABBITMQ_APP_USER']}:{env['BANYAN_RABBITMQ_APP_PASSWORD']}@",
                            f"{env['BANYAN_RABBITMQ_ADMIN_USER']}:{env['BANYAN_RABBITMQ_ADMIN_PASSWORD']}@")
                  for u in cluster.urls.values()]
    assert admin_urls != list(cluster.urls.values()), "the services must not hold the administrator's password"
    admin = cluster.client_run({"mode": "logins", "urls": [*cluster.urls.values(), *admin_urls]})["results"]
    guest = [*cluster.client_run({"mode": "logins", "urls": ["amqp://guest:guest@rabbitmq-1:5672/"]})["results"],
             *cluster.client_run({"mode": "logins", "urls": ["amqp://guest:guest@127.0.0.1:5672/"]},
                                 on=cluster.nodes["rabbitmq-1"])["results"]]
    problems = [f"app or admin refused: {r}" for r in admin if not r["ok"]]
    problems += [f"guest not refused at login: {r}" for r in guest
                 if r["ok"] or not r["auth_refused"] or PLAIN_REFUSED not in r["error"]]
    assert not problems, "\n".join(problems)


def test_the_apps_user_has_its_vhost_only_and_no_management_tags(cluster: Cluster) -> None:
    """Least privilege: the applications' user may configure, write and read on its vhost, holds no tags (so the
    management API refuses it), and has no permission anywhere else; the administrator keeps both."""
    env = cluster.node_env["rabbitmq-1"]
    app, admin = env["BANYAN_RABBITMQ_APP_USER"], env["BANYAN_RABBITMQ_ADMIN_USER"]
    users = {u["user"]: u["tags"] for u in cluster.ctl_json("rabbitmq-1", "list_users")}
    assert users.get(app) == [] and users.get(admin) == ["administrator"], users
    assert "guest" not in users, users
    perms = cluster.ctl_json("rabbitmq-1", "list_user_permissions", app)
    assert perms == [{"vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}], perms
    cluster.ctl("rabbitmq-1", "add_vhost", "banyan-other")
    try:
        url = cluster.urls["rabbitmq-1"]
        other = cluster.client_run({"mode": "logins", "urls": [url.rstrip("/") + "/banyan-other"]})["results"]
        assert other and not other[0]["ok"], f"the apps' user reached another vhost: {other}"
        assert "NOT_ALLOWED - access to vhost 'banyan-other' refused for user" in other[0]["error"], other
    finally:
        cluster.ctl("rabbitmq-1", "delete_vhost", "banyan-other")

def test_quorum_queue_keeps_every_confirmed_message_when_its_leader_dies(cluster: Cluster) -> None:
    """Runs last: it kills a node. Publisher confirms + a replicated queue: nothing lost, nothing twice."""
    queue = "banyan-failover"
    quorum_is_default = _version() >= (3, 13)
    arguments = {} if quorum_is_default else {"x-queue-type": "quorum"}
    result = cluster.client_run({"mode": "declare", "url": cluster.urls["rabbitmq-1"], "queue": queue,
                                 "arguments": arguments})
    assert result["ok"], result
    info = cluster.queues("rabbitmq-1")[queue]
    assert info["type"] == "quorum", info
    assert set(info["members"]) == {e["RABBITMQ_NODENAME"] for e in cluster.node_env.values()}, info
    leader = next(n for n, e in cluster.node_env.items() if e["RABBITMQ_NODENAME"] == info["leader"])
    publisher_node, consumer_node = (n for n in sorted(cluster.nodes) if n != leader)

    out = cluster.workdir / "results"
    out.mkdir(exist_ok=True)
    marker = out / "stop-now"
    consumer = cluster.client.spawn(_client_argv({
        "mode": "consume", "url": cluster.urls[consumer_node], "queue": queue, "total": MESSAGES,
        "prefetch": PREFETCH, "out": str(out / "consumer.json")}), env=_client_env(), log=out / "consumer.log")
    publisher = cluster.client.spawn(_client_argv({
        "mode": "publish", "url": cluster.urls[publisher_node], "queue": queue, "total": MESSAGES,
        "rate": PUBLISH_RATE, "mark_at": STOP_AT, "marker": str(marker), "out": str(out / "publisher.json")}),
        env=_client_env(), log=out / "publisher.log")

    netns.wait_until(lambda: marker.exists() or publisher.poll() is not None, timeout=60,
                     what=f"{STOP_AT} confirmed messages", interval=0.01)
    stopped_at = time.monotonic()
    cluster.nodes[leader].kill_all()

    for proc, name in ((publisher, "publisher"), (consumer, "consumer")):
        proc.wait(timeout=120)  # on a timeout, the Network's cleanup ends them
        assert (out / f"{name}.json").exists(), (out / f"{name}.log").read_text(errors="replace")
    pub = json.loads((out / "publisher.json").read_text())
    con = json.loads((out / "consumer.json").read_text())

    confirms: list[tuple[float, int]] = [(t, n) for t, n in pub["confirms"]]  # (time, confirmed so far)
    before = [c for c in confirms if c[0] <= stopped_at]
    assert before and before[-1][1] < MESSAGES, "the leader was not stopped while publishing"
    gaps = [(b[0] - a[0], a[0]) for a, b in itertools.pairwise(confirms)]
    # The publish pause: the longest wait for a confirm from the stop on; the steady state's longest, for scale.
    pause, pause_from = max((g for g in gaps if g[1] + g[0] > stopped_at), default=(0.0, stopped_at))
    steady = max((g[0] for g in gaps if g[1] + g[0] <= stopped_at), default=0.0)
    seen = Counter({int(k): v for k, v in con["seen"].items()})
    lost = sum(1 for i in range(MESSAGES) if seen[i] == 0)
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    new_leader = cluster.queues(publisher_node)[queue]["leader"]
    report(f"rabbitmq quorum queue, leader {leader} killed after {before[-1][1]} of {MESSAGES} confirms: "
           f"publish pause {pause:.2f}s (longest gap between confirms, from {pause_from - stopped_at:+.2f}s "
           f"after the stop; {steady:.2f}s before it), publishing took {pub['finished'] - pub['started']:.1f}s, "
           f"all consumed after {con['finished'] - pub['started']:.1f}s; "
           f"lost {lost}, duplicated {duplicated}, nacked {pub['nacked']}; new leader {new_leader}")
    assert not pub["error"] and not con["error"], (pub["error"], con["error"])
    assert pub["confirmed"] == MESSAGES, pub["confirmed"]
    assert new_leader != info["leader"]
    assert lost == 0
    assert duplicated == 0
    assert con["remaining"] == 0


# ---- the AMQP clients, run inside a host's namespace: python -m tests.servers.test_rabbitmq_servers '<json>' ----

def _logins(urls: list[str]) -> dict[str, Any]:
    import pika
    import pika.exceptions

    results = []
    for url in urls:
        try:
            conn = pika.BlockingConnection(pika.URLParameters(url))
            conn.channel().close()
            conn.close()
            results.append({"url": urlsplit(url).hostname, "ok": True, "auth_refused": False, "error": ""})
        except pika.exceptions.AMQPConnectionError as e:
            refused = isinstance(e, pika.exceptions.ProbableAuthenticationError | pika.exceptions.AuthenticationError)
            results.append({"url": urlsplit(url).hostname, "ok": False, "auth_refused": refused,
                            "error": f"{type(e).__name__}: {e}"})
    return {"results": results}


def _declare(url: str, queue: str, arguments: dict[str, Any]) -> dict[str, Any]:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(url))
    conn.channel().queue_declare(queue, durable=True, arguments=arguments or None)
    conn.close()
    return {"ok": True}


@dataclass
class _PublishState:
    tag: int = 0
    sent: int = 0
    confirmed: int = 0
    nacked: int = 0
    error: str = ""


def _publish(url: str, queue: str, total: int, rate: float, mark_at: int, marker: str, out: str) -> int:
    """Persistent messages with publisher confirms, up to WINDOW in flight; a nacked message is sent again."""
    import pika
    from pika.spec import Basic

    pending: deque[int] = deque(range(total))
    in_flight: dict[int, int] = {}  # delivery tag -> message id
    confirms: list[tuple[float, int]] = []  # (time, confirmed so far) at each confirm frame
    state = _PublishState()
    started = time.monotonic()
    props = pika.BasicProperties(delivery_mode=2, content_type="text/plain")
    channel: Any = None

    def pump() -> None:
        allowed = (time.monotonic() - started) * rate
        while pending and len(in_flight) < WINDOW and state.sent < allowed:
            message = pending.popleft()
            channel.basic_publish("", queue, str(message).encode(), props)
            state.tag += 1
            state.sent += 1
            in_flight[state.tag] = message
        if pending or in_flight:  # keeps going until every message is confirmed (a nacked one is sent again)
            conn.ioloop.call_later(0.002, pump)

    def on_confirm(frame: Any) -> None:
        method = frame.method
        tags = [t for t in in_flight if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        for tag in tags:
            message = in_flight.pop(tag)
            if isinstance(method, Basic.Nack):
                state.nacked += 1
                pending.append(message)
            else:
                state.confirmed += 1
        confirms.append((time.monotonic(), state.confirmed))
        if state.confirmed >= mark_at and not os.path.exists(marker):
            Path(marker).touch()
        if not pending and not in_flight:
            conn.close()

    def on_channel(ch: Any) -> None:
        nonlocal channel
        channel = ch
        ch.confirm_delivery(ack_nack_callback=on_confirm, callback=lambda _frame: pump())

    def on_closed(_conn: Any, reason: Exception) -> None:
        if pending or in_flight:
            state.error = f"connection closed: {reason!r}"
        conn.ioloop.stop()

    def on_failed(_conn: Any, reason: Exception) -> None:
        state.error = f"connection failed: {reason!r}"
        conn.ioloop.stop()

    conn = pika.SelectConnection(pika.URLParameters(url), on_open_callback=lambda c: c.channel(
        on_open_callback=on_channel), on_open_error_callback=on_failed, on_close_callback=on_closed)
    conn.ioloop.start()
    result = {**dataclasses.asdict(state), "started": started, "finished": confirms[-1][0] if confirms else started,
              "confirms": confirms}
    Path(out).write_text(json.dumps(result))
    return 1 if state.error else 0


def _consume(url: str, queue: str, total: int, prefetch: int, out: str) -> int:
    """Acks each message; stops when every id was seen, then collects whatever is still (or again) queued."""
    import pika
    import pika.exceptions

    seen: Counter[int] = Counter()
    finished, remaining, error = 0.0, -1, ""
    try:
        conn = pika.BlockingConnection(pika.URLParameters(url))
        channel = conn.channel()
        channel.basic_qos(prefetch_count=prefetch)
        for method, _props, body in channel.consume(queue, inactivity_timeout=60):
            if method is None:  # nothing for a minute: some message never came
                break
            seen[int(body)] += 1
            channel.basic_ack(method.delivery_tag)
            if len(seen) == total:
                break
        finished = time.monotonic()
        channel.cancel()
        conn.close()  # anything delivered but unacked goes back to the queue
        conn = pika.BlockingConnection(pika.URLParameters(url))
        channel = conn.channel()
        while True:
            method, _props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            seen[int(body)] += 1
        remaining = channel.queue_declare(queue, passive=True).method.message_count
        conn.close()
    except pika.exceptions.AMQPError as e:
        error = f"{type(e).__name__}: {e}"
    Path(out).write_text(json.dumps({"seen": {str(k): v for k, v in seen.items()}, "finished": finished or
                                     time.monotonic(), "remaining": remaining, "error": error}))
    return 1 if error else 0


def _main(args: dict[str, Any]) -> int:
    mode = args.pop("mode")
    if mode == "probe":
        return amqp_client.probe(args["targets"])
    if mode == "publish":
        return _publish(**args)
    if mode == "consume":
        return _consume(**args)
    result = _logins(**args) if mode == "logins" else _declare(**args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(_main(json.loads(sys.argv[1])))

