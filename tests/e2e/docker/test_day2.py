"""Day 2 on a real Docker engine: updates applied as `pulumi up` applies them, medium tier, under load.

    sudo .venv/bin/pytest tests/e2e/docker/test_day2.py -rA

`StackDriver.update` brings the engine from one rendering to the next the way the provider would: a
container whose changed inputs the provider updates in place (memory, CPU shares, the restart policy) gets
one ContainerUpdate; any other changed input replaces it, delete first (the stack asks for that, since the
names are fixed), stopped with its destroyGraceSeconds; new resources are created, dropped ones deleted.
`only=` is `pulumi up --target`. What the real engine would add is named where it matters (a replaced node's
new container id changes the Redis creation step's label, so the final plain `up` runs that step again).

A change of a clustered part's files replaces every node at once in one `up`; the preview warns and gives
the rolling procedure (README, "Day 2"). The procedure is what runs here, with publishes and Redis traffic
going on throughout, and what it costs is measured.
"""

from __future__ import annotations

import functools
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pika
import pika.exceptions
import pytest
import redis
from redis.crc import key_slot

from infra import preflight
from infra.preflight import node_digests
from model.preflight import check
from testkit import Rendering, render_stack
from tests.e2e.docker.driver import (
    CONTAINER,
    Engine,
    EngineError,
    LocalImage,
    StackDriver,
    local_stack_sets,
    target,
    wait_until,
)
from tests.e2e.docker.test_docker_engine import _psql, driven, engine, images, measured, rendered
from tests.e2e.docker.test_preflight_engine import environ_for, spec_of

__all__ = ["engine", "images"]  # the session fixtures, shared with the main suite (same lock)

TIER = "medium"
RABBITMQ = ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3")
REDIS = ("redis-node-1", "redis-node-2", "redis-node-3")
SETTLE_S = 180.0


@pytest.fixture(scope="module")
def data_tier(engine: Engine, images: dict[str, LocalImage]) -> Iterator[StackDriver]:
    with driven(rendered(TIER, images), images, engine, "postgres", "rabbitmq", "redis") as stack:
        measured(f"dev {TIER} data tier up in {stack.up_seconds:.1f}s")
        yield stack


def _ctl(stack: StackDriver, node: str, *argv: str) -> subprocess.CompletedProcess[str]:
    result = stack.exec(node, list(argv))
    return subprocess.CompletedProcess(list(argv), result.exit_code, result.stdout, result.stderr)


class Publisher(threading.Thread):
    """Publishes persistent messages with confirms to a quorum queue, as an application would: connected to
    one node of the list, and on a lost connection to the next, re-publishing what was not confirmed."""

    def __init__(self, stack: StackDriver, queue: str) -> None:
        super().__init__(daemon=True)
        env = stack.env("rabbitmq-1")
        self.credentials = pika.PlainCredentials(env["BANYAN_RABBITMQ_APP_USER"], env["BANYAN_RABBITMQ_APP_PASSWORD"])
        self.stack, self.queue = stack, queue
        self.stop = threading.Event()
        self.confirmed: list[int] = []
        self.nacked = 0
        self.reconnects = 0
        self.unanswered = 0   # publishes whose connection broke before the confirm: published again
        self.error: BaseException | None = None

    def _channel(self, attempt: int) -> tuple[pika.BlockingConnection, object]:
        node = RABBITMQ[attempt % len(RABBITMQ)]
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            self.stack.address(node), 5672, "/", self.credentials, socket_timeout=5, blocked_connection_timeout=30))
        channel = conn.channel()
        channel.confirm_delivery()
        channel.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
        return conn, channel

    def run(self) -> None:
        attempt, i = 0, 0
        channel = None
        try:
            while not self.stop.is_set():
                if channel is None:
                    try:
                        _, channel = self._channel(attempt)
                    except (pika.exceptions.AMQPError, OSError, KeyError, EngineError):
                        attempt += 1
                        self.reconnects += 1
                        time.sleep(0.2)
                        continue
                try:
                    channel.basic_publish(  # type: ignore[attr-defined]
                        "", self.queue, str(i).encode(), pika.BasicProperties(delivery_mode=2, message_id=str(i)),
                        mandatory=True)
                    self.confirmed.append(i)
                    i += 1
                except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
                    self.nacked += 1
                    i += 1
                except (pika.exceptions.AMQPError, OSError):
                    self.unanswered += 1
                    channel = None
                    attempt += 1
                    self.reconnects += 1
        except BaseException as exc:  # reported by the test
            self.error = exc


class RedisTraffic(threading.Thread):
    """Writes a new key and reads it back, round robin over the masters (each key sent to the master of its
    slot). Failures are counted per master, and against `down` (the node being replaced) when it is down."""

    def __init__(self, stack: StackDriver, owners: dict[str, tuple[int, int]], down: list[str]) -> None:
        super().__init__(daemon=True)
        self.stack, self.owners, self.down = stack, owners, down
        self.password = stack.env(REDIS[0])["REDIS_PASSWORD"]
        self.stop = threading.Event()
        self.acknowledged: dict[str, list[str]] = {name: [] for name in owners}
        self.failed_healthy: list[str] = []
        self.failed_down = 0
        self.error: BaseException | None = None
        self._clients: dict[str, redis.Redis] = {}

    def _client(self, name: str) -> redis.Redis:
        if name not in self._clients:
            self._clients[name] = redis.Redis(host=self.stack.address(name), port=6379, password=self.password,
                                              socket_timeout=2, socket_connect_timeout=2, decode_responses=True)
        return self._clients[name]

    def owner(self, key: str) -> str:
        slot = key_slot(key.encode())
        return next(name for name, (first, last) in self.owners.items() if first <= slot <= last)

    def run(self) -> None:
        i = 0
        try:
            while not self.stop.is_set():
                key = f"roll:{i}"
                i += 1
                name = self.owner(key)
                was_down = name in self.down
                try:
                    client = self._client(name)
                    client.set(key, key)
                    if client.get(key) != key:
                        raise AssertionError(f"{key} read back wrong from {name}")
                    self.acknowledged[name].append(key)
                except (redis.exceptions.RedisError, OSError, KeyError, EngineError) as exc:
                    self._clients.pop(name, None)
                    if was_down or name in self.down:
                        self.failed_down += 1
                        time.sleep(0.05)
                    else:
                        self.failed_healthy.append(f"{name}: {exc}")
        except BaseException as exc:  # reported by the test
            self.error = exc


def _slot_ranges(stack: StackDriver, password: str) -> dict[str, tuple[int, int]]:
    client = redis.Redis(host=stack.address(REDIS[0]), port=6379, password=password, decode_responses=True)
    ranges: dict[str, tuple[int, int]] = {}
    for first, last, master, *_ in client.execute_command("CLUSTER SLOTS"):  # type: ignore[no-untyped-call]
        ranges[str(master[0])] = (int(first), int(last))
    return ranges


def _redis_settled(stack: StackDriver, password: str) -> bool:
    """Every master serves its slots and sees every link up: the procedure's "back in its cluster" for Redis."""
    for node in REDIS:
        try:
            client = redis.Redis(host=stack.address(node), port=6379, password=password, socket_timeout=2,
                                 decode_responses=True)
            info = client.cluster("info")
            nodes = client.execute_command("CLUSTER NODES")  # type: ignore[no-untyped-call]
        except (redis.exceptions.RedisError, OSError, KeyError, EngineError):
            return False
        text = nodes if isinstance(nodes, str) else "\n".join(f"{k} {v}" for k, v in dict(nodes).items())
        if info.get("cluster_state") != "ok" or "fail" in text or "disconnected" in text:
            return False
    return True


def _quorum_safe(stack: StackDriver, node: str) -> bool:
    """Stopping `node` leaves every quorum queue a majority online (RabbitMQ's own check)."""
    return _ctl(stack, node, "rabbitmq-queues", "check_if_node_is_quorum_critical").returncode == 0


def _changed(images: dict[str, LocalImage], stack: StackDriver) -> Rendering:
    """Both clustered parts' memory limits raised by 256 MiB: their rendered files change with them (the
    RabbitMQ watermark, Redis maxmemory), so every node of each would be replaced."""
    rabbit = int(stack.step("rabbitmq-1").inputs["memory"]) + 256
    red = int(stack.step(REDIS[0]).inputs["memory"]) + 256
    return render_stack("dev", set={"tier": TIER, **local_stack_sets(images),
                                    "rabbitmq.resources.limits.memory_mib": rabbit,
                                    "redis.resources.limits.memory_mib": red})


def test_a_second_up_of_the_same_rendering_changes_nothing(data_tier: StackDriver,
                                                          images: dict[str, LocalImage]) -> None:
    again = render_stack("dev", set={"tier": TIER, **local_stack_sets(images)})
    assert data_tier.changes(again) == []
    assert all(data_tier.mismatches(name) == [] for name in data_tier.instances()
               if data_tier.step(name).resource.type == CONTAINER and not data_tier.step(name).inputs.get("attach"))


def test_a_rolled_config_change_keeps_both_clusters_serving(data_tier: StackDriver, engine: Engine,
                                                           images: dict[str, LocalImage]) -> None:
    stack = data_tier
    changed = _changed(images, stack)
    plan = stack.changes(changed)
    assert sorted((c.action, stack.step_of(c.urn).instance) for c in plan) == \
        sorted(("replace", n) for n in (*RABBITMQ, *REDIS))
    assert all("uploads" in c.fields for c in plan), plan

    # The preview of this change warns that the nodes would be replaced together and gives the procedure.
    snapshot = preflight.read_engine(preflight.locate({}, environ_for(engine)).socket_path or "")
    spec = spec_of("dev", tier=TIER, **{k.replace(".", "__"): v for k, v in local_stack_sets(images).items()},
                   rabbitmq__resources__limits__memory_mib=int(stack.step("rabbitmq-1").inputs["memory"]) + 256,
                   redis__resources__limits__memory_mib=int(stack.step(REDIS[0]).inputs["memory"]) + 256)
    warnings = check(spec, snapshot, node_digests(spec)).warnings
    assert any("rabbitmq-1" in w and "--target" in w for w in warnings), warnings
    assert any("redis-node-1" in w and "--target" in w for w in warnings), warnings

    password = stack.env(REDIS[0])["REDIS_PASSWORD"]
    down: list[str] = []
    publisher = Publisher(stack, f"roll-{uuid.uuid4().hex[:8]}")
    traffic = RedisTraffic(stack, _slot_ranges(stack, password), down)
    publisher.start()
    traffic.start()
    wait_until(lambda: len(publisher.confirmed) > 100 and sum(map(len, traffic.acknowledged.values())) > 100,
               timeout_s=60, what="load running on both clusters")
    took: dict[str, float] = {}
    started = time.monotonic()
    for node in RABBITMQ:
        wait_until(functools.partial(_quorum_safe, stack, node), timeout_s=SETTLE_S, what=f"{node} not quorum critical")
        t0 = time.monotonic()
        done = stack.update(changed, only=target(node))
        assert [c.action for c in done] == ["replace"]
        took[node] = time.monotonic() - t0
    for node in REDIS:
        wait_until(lambda: _redis_settled(stack, password), timeout_s=SETTLE_S, what="redis cluster settled")
        t0 = time.monotonic()
        down.append(node)
        stack.update(changed, only=target(node))
        wait_until(lambda: _redis_settled(stack, password), timeout_s=SETTLE_S, what=f"{node} back in its cluster")
        took[node] = time.monotonic() - t0
        down.remove(node)
    rolled_s = time.monotonic() - started
    # The final plain `up`: nothing left but the creation step, which the real engine runs again (its label
    # follows the nodes' new container ids); it finds the cluster formed.
    assert stack.changes(changed) == []
    stack.replace("redis-cluster-create")
    assert stack.exit_codes["redis-cluster-create"] == 0, stack.container_logs.get("redis-cluster-create")
    assert "already formed" in stack.container_logs["redis-cluster-create"]
    confirmed_at_end = len(publisher.confirmed)
    wait_until(lambda: len(publisher.confirmed) > confirmed_at_end + 100, timeout_s=60,
               what="publishes confirmed after the roll")
    publisher.stop.set()
    traffic.stop.set()
    publisher.join(30)
    traffic.join(30)
    assert publisher.error is None and traffic.error is None, (publisher.error, traffic.error)

    # Every confirmed message is in the queue; every acknowledged key is on its master.
    env = stack.env("rabbitmq-1")
    credentials = pika.PlainCredentials(env["BANYAN_RABBITMQ_APP_USER"], env["BANYAN_RABBITMQ_APP_PASSWORD"])
    seen: set[int] = set()
    params = pika.ConnectionParameters(stack.address("rabbitmq-2"), 5672, "/", credentials)
    with pika.BlockingConnection(params) as conn:
        channel = conn.channel()
        for method, props, _ in channel.consume(publisher.queue, inactivity_timeout=5):
            if method is None:
                break
            seen.add(int(props.message_id))
            channel.basic_ack(method.delivery_tag)
        channel.cancel()
    lost_messages = sorted(set(publisher.confirmed) - seen)
    lost_keys = []
    for name, keys in traffic.acknowledged.items():
        client = redis.Redis(host=stack.address(name), port=6379, password=password, decode_responses=True)
        pipe = client.pipeline(transaction=False)  # one GET per key: MGET needs one slot
        for key in keys:
            pipe.get(key)
        values = pipe.execute()
        lost_keys += [k for k, v in zip(keys, values, strict=True) if v != k]
    new_memory = int(stack.step("rabbitmq-1").inputs["memory"])
    assert [int(stack.inspect(n)["HostConfig"]["Memory"]) >> 20 for n in RABBITMQ] == [new_memory] * len(RABBITMQ)
    measured(
        f"rolled a config change over {len(RABBITMQ)} RabbitMQ and {len(REDIS)} Redis nodes in {rolled_s:.0f}s "
        f"(per node: {', '.join(f'{n} {t:.0f}s' for n, t in took.items())}); RabbitMQ: "
        f"{len(publisher.confirmed)} confirmed, {len(lost_messages)} lost, {publisher.nacked} nacked, "
        f"{publisher.unanswered} unanswered (published again), {publisher.reconnects} reconnects; Redis: "
        f"{sum(map(len, traffic.acknowledged.values()))} keys written and read, {len(traffic.failed_healthy)} "
        f"failures on masters not being replaced, {traffic.failed_down} on the one being replaced, "
        f"{len(lost_keys)} acknowledged keys lost")
    assert lost_messages == []
    assert traffic.failed_healthy == []
    assert lost_keys == []


def _cluster_members(stack: StackDriver, node: str) -> set[str]:
    result = stack.exec(node, ["rabbitmqctl", "-q", "cluster_status", "--formatter", "json"], timeout_s=120)
    assert result.exit_code == 0, result.stderr
    return set(json.loads(result.stdout)["running_nodes"])


def test_a_move_up_a_tier_keeps_every_part_s_data(data_tier: StackDriver, engine: Engine,
                                                  images: dict[str, LocalImage]) -> None:
    """medium -> large: PostgreSQL 2 -> 3 replicas, RabbitMQ 3 -> 5 nodes, Redis 3 masters -> 3 masters x 1
    replica. The preview allows it (warning that the nodes are replaced together, that Redis grows, and that
    RabbitMQ must be replaced before it grows: one `up --target` of its running nodes, then a plain `up`);
    afterwards every row, message and key written before is there, on every member."""
    stack = data_tier
    local = {k.replace(".", "__"): v for k, v in local_stack_sets(images).items()}
    snapshot = preflight.read_engine(preflight.locate({}, environ_for(engine)).socket_path or "")
    # A host with fewer CPUs than a large container's limit (PostgreSQL's 4) is refused at preview, naming the
    # key; the move then runs with the limits the message allows.
    refused = check(spec_of("dev", tier="large", **local), snapshot).problems
    assert all(p.key.endswith(".resources.limits.cpu_millis") for p in refused), [p.render() for p in refused]
    assert bool(refused) == (snapshot.cpus is not None and snapshot.cpus < 4)
    fit = {p.key.removeprefix("banyan:"): (snapshot.cpus or 0) * 1000 for p in refused}
    spec = spec_of("dev", tier="large", **local, **{k.replace(".", "__"): v for k, v in fit.items()})
    found = check(spec, snapshot, node_digests(spec))
    assert found.problems == (), [p.render() for p in found.problems]
    assert any(w.startswith("Redis grows from a 3-node cluster") for w in found.warnings), found.warnings
    large = render_stack("dev", set={"tier": "large", **local_stack_sets(images), **fit})

    pg = stack.env("postgres-primary")["POSTGRES_APP_PASSWORD"]
    assert _psql(stack, "postgres-primary", "CREATE TABLE moved (x int); INSERT INTO moved SELECT generate_series(1, "
                 "1000)", pg)[0] == 0
    env = stack.env("rabbitmq-1")
    credentials = pika.PlainCredentials(env["BANYAN_RABBITMQ_APP_USER"], env["BANYAN_RABBITMQ_APP_PASSWORD"])
    queue = f"moved-{uuid.uuid4().hex[:8]}"
    with pika.BlockingConnection(pika.ConnectionParameters(stack.address("rabbitmq-1"), 5672, "/", credentials)) as c:
        channel = c.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        for i in range(200):
            channel.basic_publish("", queue, str(i).encode(), pika.BasicProperties(delivery_mode=2))
    password = stack.env(REDIS[0])["REDIS_PASSWORD"]
    keys = [f"moved:{i}" for i in range(300)]
    owners = _slot_ranges(stack, password)
    for key in keys:
        slot = key_slot(key.encode())
        owner = next(n for n, (a, b) in owners.items() if a <= slot <= b)
        redis.Redis(host=stack.address(owner), port=6379, password=password).set(key, key)
    for name in REDIS:  # flushed to the append-only file before the nodes are replaced
        redis.Redis(host=stack.address(name), port=6379, password=password).bgrewriteaof()

    # The preview's procedure for RabbitMQ growing while its nodes are replaced: the running nodes first (a
    # fresh node that finds no running peer within ~5 s would start as a cluster of its own), then the rest.
    assert any("starts as a cluster of its own" in w for w in found.warnings), found.warnings
    plan = stack.changes(large)
    started = time.monotonic()
    stack.update(large, only=lambda step: step.instance in RABBITMQ)
    stack.update(large)
    # The real engine also replaces the creation step (its label follows the replaced nodes' ids, and its node
    # list changed): here its script changed, so update() ran it already.
    took = time.monotonic() - started
    create_log = stack.container_logs.get("redis-cluster-create", "")
    assert stack.exit_codes.get("redis-cluster-create") == 0, create_log
    assert "grown from 3 to 6 nodes" in create_log, create_log

    rows = {name: _psql(stack, name, "SELECT count(*) FROM moved", pg)[:2]
            for name in ("postgres-primary", "postgres-replica-1", "postgres-replica-2", "postgres-replica-3")}
    assert rows == dict.fromkeys(rows, (0, "1000")), rows
    streaming = stack.exec("postgres-primary", [  # as the server's superuser, over the socket: state is theirs
        "psql", "-X", "-A", "-t", "-U", "postgres", "-c",
        "SELECT string_agg(application_name || '=' || state, ',' ORDER BY application_name) FROM pg_stat_replication"])
    assert streaming.stdout.strip() == ",".join(f"postgres-replica-{i}=streaming" for i in (1, 2, 3)), streaming
    members = _cluster_members(stack, "rabbitmq-5")
    assert members == {f"rabbit@rabbitmq-{i}" for i in range(1, 6)}, members
    with pika.BlockingConnection(pika.ConnectionParameters(stack.address("rabbitmq-4"), 5672, "/", credentials)) as c:
        channel = c.channel()
        got = 0
        for method, _, _ in channel.consume(queue, inactivity_timeout=5):
            if method is None:
                break
            got += 1
            channel.basic_ack(method.delivery_tag)
        channel.cancel()
    assert got == 200
    after = _slot_ranges(stack, password)
    clients = {n: redis.Redis(host=stack.address(n), port=6379, password=password, decode_responses=True)
               for n in after}
    lost = [k for k in keys
            if clients[next(n for n, (a, b) in after.items() if a <= key_slot(k.encode()) <= b)].get(k) != k]
    assert lost == []
    roles = [redis.Redis(host=stack.address(n), port=6379, password=password, decode_responses=True)
             .info("replication")["role"] for n in (*REDIS, "redis-node-4", "redis-node-5", "redis-node-6")]
    assert sorted(roles) == ["master"] * 3 + ["slave"] * 3, roles
    counts = {a: sum(c.action == a for c in plan) for a in ("create", "update", "replace", "delete")}
    measured(f"medium -> large data tier in two updates (limits fitted to the host: {fit or 'none'}): {counts} in "
             f"{took:.0f}s; 1000 rows on 4 PostgreSQL "
             f"instances (3 streaming), 200 of 200 messages on a 5-node RabbitMQ cluster, 0 of {len(keys)} Redis keys "
             "lost, 3 masters x 1 replica")
