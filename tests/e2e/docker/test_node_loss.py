"""Node loss on a real Docker engine, medium tier, under load: a RabbitMQ node, a Redis master and a
PostgreSQL replica each crash and come back by the restart policy alone, with what they held.

A crash here is SIGKILL of the container's main process from the host, which is what an OOM kill or a
segfault looks like to Docker. `docker kill` is not a crash to Docker: it marks the container as stopped
by hand, and `restart: unless-stopped` (like `always`) then leaves it down until someone starts it
(checked below, because an operator who "tests failover" with `docker kill` sees a node that never
comes back).

Each scenario reports what it measured (the run's summary, "Docker engine: measured").
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pika
import pika.exceptions
import pytest
import redis

from tests.e2e.docker.driver import Engine, LocalImage, StackDriver, wait_until
from tests.e2e.docker.test_docker_engine import driven, engine, images, measured, rendered

__all__ = ["engine", "images"]  # the session fixtures, shared with the main suite (same lock)

TIER = "medium"
BACK_WITHIN_S = 180.0


@pytest.fixture(scope="module")
def data_tier(engine: Engine, images: dict[str, LocalImage]) -> Iterator[StackDriver]:
    with driven(rendered(TIER, images), images, engine, "postgres", "rabbitmq", "redis") as stack:
        yield stack


def crash(stack: StackDriver, name: str) -> int:
    """SIGKILL the container's main process from the host; returns the restart count before it."""
    state = stack.inspect(name)["State"]
    count = int(stack.inspect(name)["RestartCount"])
    os.kill(int(state["Pid"]), signal.SIGKILL)
    return count


def back(stack: StackDriver, name: str, restarts_before: int) -> float:
    """Seconds until Docker restarted the container and its health check passes again."""
    def healthy_again() -> bool:
        info = stack.inspect(name)
        return int(info["RestartCount"]) > restarts_before and stack.health(name) == "healthy"
    return wait_until(healthy_again, timeout_s=BACK_WITHIN_S, what=f"{name} restarted and healthy", poll_s=0.5)


def test_docker_kill_is_a_manual_stop_that_unless_stopped_does_not_undo(data_tier: StackDriver) -> None:
    """Why the scenarios below crash the process instead: after `docker kill` nothing restarts the node."""
    stack = data_tier
    name = "redis-node-3"
    stack.engine.call("POST", f"/containers/{stack.container_id(name)}/kill")
    wait_until(lambda: not stack.inspect(name)["State"]["Running"], timeout_s=30, what=f"{name} stopped")
    assert stack.inspect(name)["RestartCount"] == 0 and not stack.inspect(name)["State"]["Running"]
    stack.engine.call("POST", f"/containers/{stack.container_id(name)}/start")
    wait_until(lambda: stack.health(name) == "healthy", timeout_s=BACK_WITHIN_S, what=f"{name} healthy")


def _amqp(stack: StackDriver, node: str) -> pika.BlockingConnection:
    env = stack.env(node)
    credentials = pika.PlainCredentials(env["BANYAN_RABBITMQ_APP_USER"], env["BANYAN_RABBITMQ_APP_PASSWORD"])
    return pika.BlockingConnection(pika.ConnectionParameters(stack.address(node), 5672, "/", credentials,
                                                             connection_attempts=3, retry_delay=1,
                                                             blocked_connection_timeout=30))


def test_a_rabbitmq_node_crash_loses_no_confirmed_message(data_tier: StackDriver) -> None:
    stack = data_tier
    queue = f"node-loss-{uuid.uuid4().hex[:8]}"
    total, crash_at = 3000, 1000
    body = b"x" * 1024
    conn = _amqp(stack, "rabbitmq-1")
    channel = conn.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.confirm_delivery()
    confirmed: list[int] = []
    failed = 0
    restarts = 0
    started = time.monotonic()
    slowest = 0.0
    for i in range(total):
        if i == crash_at:
            restarts = crash(stack, "rabbitmq-2")
        t0 = time.monotonic()
        try:
            channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2, message_id=str(i)),
                                  mandatory=True)
            confirmed.append(i)
        except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
            failed += 1
        slowest = max(slowest, time.monotonic() - t0)
    publish_s = time.monotonic() - started
    took = back(stack, "rabbitmq-2", restarts)
    seen: set[int] = set()
    for method, props, payload in channel.consume(queue, inactivity_timeout=5):
        if method is None:
            break
        assert payload == body
        seen.add(int(props.message_id))
        channel.basic_ack(method.delivery_tag)
    channel.cancel()
    conn.close()
    lost = sorted(set(confirmed) - seen)
    measured(f"rabbitmq {TIER}: rabbitmq-2 crashed after {crash_at} of {total} publishes (quorum queue, 1 KiB, "
             f"persistent, confirms): {len(confirmed)} confirmed, {failed} nacked, {len(lost)} lost; slowest "
             f"confirm {slowest * 1000:.0f} ms; publishing took {publish_s:.1f}s; the node was back and healthy "
             f"{took:.1f}s after the crash")
    assert lost == []
    assert len(confirmed) + failed == total


def _slot_owner(stack: StackDriver, password: str) -> dict[str, tuple[int, int]]:
    """Node name -> its (first, last) slot range, from CLUSTER SLOTS (endpoints are host names)."""
    client = redis.Redis(host=stack.address("redis-node-1"), port=6379, password=password, decode_responses=True)
    owners: dict[str, tuple[int, int]] = {}
    for first, last, master, *_ in client.execute_command("CLUSTER SLOTS"):  # type: ignore[no-untyped-call]
        owners[str(master[0])] = (int(first), int(last))
    return owners


def test_a_redis_master_crash_keeps_what_was_written_before_the_last_fsync(data_tier: StackDriver) -> None:
    """Medium has masters only: the crashed master's slots are down until Docker restarts it, then its data
    comes back from its append-only file (fsync every second: writes of the last second may be lost)."""
    stack = data_tier
    name = "redis-node-2"
    password = stack.env(name)["REDIS_PASSWORD"]
    first, last = _slot_owner(stack, password)[name]
    node = redis.Redis(host=stack.address(name), port=6379, password=password, socket_timeout=2,
                       decode_responses=True)
    keys = [k for k in (f"loss:{i}" for i in range(20000)) if first <= int(node.cluster("keyslot", k)) <= last]
    keys = keys[:500]
    for k in keys:
        node.set(k, k)
    # A rewrite of the append-only file ends with an fsync: once it is done, every key above is on disk
    # (rather than waiting out the one-second fsync on a clock).
    node.bgrewriteaof()

    def rewritten() -> bool:
        info = node.info("persistence")
        return not info["aof_rewrite_in_progress"] and not info.get("aof_rewrite_scheduled") and \
            info["aof_last_bgrewrite_status"] == "ok"

    wait_until(rewritten, timeout_s=60, what=f"{name}'s append-only file rewritten")
    restarts = crash(stack, name)
    failed_writes = 0

    def writes_back() -> bool:
        nonlocal failed_writes
        try:
            return bool(redis.Redis(host=stack.address(name), port=6379, password=password, socket_timeout=1)
                        .set(keys[0], keys[0]))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError,
                redis.exceptions.ResponseError):
            failed_writes += 1
            return False

    writable = wait_until(writes_back, timeout_s=BACK_WITHIN_S, what=f"writes to {name}'s slots", poll_s=0.2)
    took = back(stack, name, restarts)
    node = redis.Redis(host=stack.address(name), port=6379, password=password, decode_responses=True)
    lost = [k for k in keys if node.get(k) != k]
    state = node.cluster("info")
    measured(f"redis {TIER}: {name} (master of slots {first}-{last}) crashed: writes to its slots back after "
             f"{writable:.1f}s ({failed_writes} failed attempts), healthy after {took:.1f}s; {len(lost)} of "
             f"{len(keys)} keys written before the last fsync lost; cluster_state "
             f"{state.get('cluster_state') if isinstance(state, dict) else state}")
    assert lost == []


def test_a_postgres_replica_crash_under_writes_catches_up_without_reseeding(data_tier: StackDriver) -> None:
    stack = data_tier
    replica = "postgres-replica-1"
    password = stack.env("postgres-primary")["POSTGRES_APP_PASSWORD"]
    primary_dsn = f"host={stack.address('postgres-primary')} user=banyan dbname=banyan connect_timeout=5"
    env = {**os.environ, "PGPASSWORD": password}

    def psql(dsn: str, sql: str) -> str:
        return subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql],
                              env=env, capture_output=True, text=True, check=True, timeout=30).stdout.strip()

    psql(primary_dsn, "CREATE TABLE IF NOT EXISTS loss (id bigint PRIMARY KEY)")
    stop = threading.Event()
    written = [0]

    def write() -> None:
        i = 0
        while not stop.is_set() and i < 200_000:
            psql(primary_dsn, f"INSERT INTO loss SELECT g FROM generate_series({i}, {i + 499}) g")
            i += 500
            written[0] = i

    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until(lambda: written[0] >= 5000, timeout_s=60, what="writes under way")
        restarts = crash(stack, replica)
        took = back(stack, replica, restarts)
        wait_until(lambda: written[0] >= 20000, timeout_s=120, what="writes after the replica returned")
    finally:
        stop.set()
        writer.join(timeout=60)
    total = psql(primary_dsn, "SELECT count(*) FROM loss")
    replica_dsn = f"host={stack.address(replica)} user=banyan dbname=banyan connect_timeout=5"
    caught_up = wait_until(lambda: psql(replica_dsn, "SELECT count(*) FROM loss") == total, timeout_s=60,
                           what=f"{replica} serving every row")
    streaming = stack.exec("postgres-primary", [
        "psql", "-X", "-A", "-t", "-U", "postgres", "-c",
        f"SELECT state FROM pg_stat_replication WHERE application_name = '{replica}'"]).stdout.strip()
    # The log of every start of the container: one seed, at the first start only.
    reseeded = stack.logs(replica, tail=None).count("seeding /var/lib/postgresql") > 1
    measured(f"postgres {TIER}: {replica} crashed under {written[0]} inserted rows: back and healthy after "
             f"{took:.1f}s, serving all {total} rows {caught_up:.1f}s later, state {streaming}, "
             f"re-seeded: {reseeded}")
    assert streaming == "streaming"
    assert not reseeded


def test_memory_limits_change_in_place_in_both_directions(data_tier: StackDriver) -> None:
    """What the provider sends for a changed limit (one ContainerUpdate with Memory and MemorySwap): raised
    past twice the old limit and lowered again, on a running node, without a restart. Without MemorySwap set
    at creation Docker would have kept swap at twice the old limit and refused the raise."""
    stack = data_tier
    name = "redis-node-1"
    host = stack.inspect(name)["HostConfig"]
    memory, started = int(host["Memory"]), stack.inspect(name)["State"]["StartedAt"]
    assert int(host["MemorySwap"]) == memory, "rendered with swap equal to the limit"
    for target in (3 * memory, memory):
        stack.engine.call("POST", f"/containers/{stack.container_id(name)}/update",
                          json_body={"Memory": target, "MemorySwap": target})
        after = stack.inspect(name)
        assert (int(after["HostConfig"]["Memory"]), int(after["HostConfig"]["MemorySwap"])) == (target, target)
    assert stack.inspect(name)["State"]["StartedAt"] == started, "no restart"
    measured(f"memory of {name}: {memory >> 20} -> {3 * memory >> 20} -> {memory >> 20} MiB in place")
