"""The dev stack on a real Docker engine, with images built locally from Debian's packages.

    sudo ./scripts/docker-engine && sudo ./scripts/build-images
    sudo .venv/bin/pytest tests/e2e/docker       # the measured times close the run ("Docker engine: measured")

The stack is rendered for the local servers' versions (as tests/servers does) and driven by driver.py:
created in dependency order, uploads copied before start, health waited for where `wait` is true.
Everything is checked from outside the containers where it can be (the published Nginx port, the
containers' addresses on the stack's network), and the engine's view of every container is compared
with what was rendered.

Every part owns its start-up (the entrypoints are rendered by the components and need only the server
binaries), so Debian's images run the same code as the official ones; nothing is stood in. Without an
engine or the images these tests skip and say why; with BANYAN_REQUIRE_DOCKER=1 (as CI sets it) they fail
instead, so CI cannot pass by skipping them.
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import io
import json
import os
import re
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
import yaml

from testkit import Rendering, Secret, render_stack
from tests.e2e.docker.driver import (
    OFFICIAL_TO_PART,
    Engine,
    LocalImage,
    StackDriver,
    UnsupportedInputError,
    duration_ns,
    engine_unavailable,
    image_mapping,
    local_images,
    local_stack_sets,
    longest_chain,
    nano_cpus,
    parts,
    upload_tar,
    wait_until,
)
from tests.helpers import report_measured


def measured(line: str) -> None:
    """A measured time, for the run's summary ("Docker engine: measured")."""
    report_measured("docker-engine", line)


def _unavailable(what: str) -> None:
    if os.environ.get("BANYAN_REQUIRE_DOCKER") == "1":
        pytest.fail(f"BANYAN_REQUIRE_DOCKER=1 but {what}")
    pytest.skip(what)


# Container, network and volume names are the stack's own: two runs on one engine would remove each
# other's objects, so a run holds this lock (in /run/lock: shared by every checkout on this host).
LOCK_PATH = "/run/lock/banyan-e2e-docker.lock"
LOCK_TIMEOUT_S = 1800
# The engine of the run that holds the lock. Modules that import these fixtures get their own session instance
# of them (pytest registers an imported fixture once per module), and a second flock of the same file by the
# same process would wait on the first forever: the lock is taken once per process.
_HELD: list[Engine] = []


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    if _HELD:
        yield _HELD[0]
        return
    found = Engine()
    why = engine_unavailable(found)
    if why:
        _unavailable(f"no Docker engine answers ({why}); start one with `sudo ./scripts/docker-engine`")
    os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
    with open(LOCK_PATH, "w") as lock:
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - started > LOCK_TIMEOUT_S:
                    pytest.fail(f"another run has held {LOCK_PATH} for {LOCK_TIMEOUT_S}s")
                time.sleep(1)
        if time.monotonic() - started > 1:
            measured(f"waited {time.monotonic() - started:.0f}s for another run on this engine ({LOCK_PATH})")
        _HELD.append(found)
        try:
            yield found
        finally:
            _HELD.clear()


@pytest.fixture(scope="session")
def images(engine: Engine) -> dict[str, LocalImage]:
    found = local_images(engine)
    missing = sorted(set(OFFICIAL_TO_PART.values()) - set(found))
    if missing:
        _unavailable(f"no local images for {missing} on the engine; build them with `sudo ./scripts/build-images`")
    return found


_RENDERED: dict[tuple[str, bool], Rendering] = {}
# The monitoring part as the whole-stack tests run it: scrapes and evaluations every few seconds, so a state
# is seen within seconds; the rules and their `for:` are the shipped ones.
SCRAPE_S = 2
EVALUATE_S = 1


def rendered(tier: str, images: dict[str, LocalImage], *, monitored: bool = False) -> Rendering:
    """The dev stack for `tier`, rendered for the local servers' versions; `monitored`: with the monitoring part
    (its mtail image the local one)."""
    if (tier, monitored) not in _RENDERED:
        sets: dict[str, object] = {"tier": tier, **local_stack_sets(images)}
        if monitored:
            sets |= {"monitoring.enabled": True, "monitoring.mtail_image": images["mtail"].tag,
                     "monitoring.scrape_interval_s": SCRAPE_S, "monitoring.evaluation_interval_s": EVALUATE_S}
        _RENDERED[tier, monitored] = render_stack("dev", set=sets)
    return _RENDERED[tier, monitored]


@contextmanager
def driven(rendering: Rendering, images: dict[str, LocalImage], engine: Engine,
           *selected: str) -> Iterator[StackDriver]:
    """The rendering's resources (or only those of `selected` parts) up on the engine; removed afterwards,
    volumes too. Leftovers of an interrupted earlier run are removed first."""
    driver = StackDriver(rendering, image_mapping(rendering, images), engine=engine,
                         select=parts(*selected) if selected else None)
    driver.purge()
    try:
        driver.up()
        yield driver
    finally:
        driver.down(volumes=True)


def http_get(url: str, *, timeout_s: float = 5, headers: dict[str, str] | None = None, method: str = "GET",
             body: Any = None) -> tuple[int, str]:
    """The status and body of a request (`body`, if given, sent as JSON)."""
    data = None if body is None else json.dumps(body).encode()
    sent = {**(headers or {}), **({"Content-Type": "application/json"} if data is not None else {})}
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def public_port(driver: StackDriver) -> int:
    return int(driver.step("nginx").inputs["ports"][0]["external"])


def containers_of(driver: StackDriver, part: str) -> list[str]:
    return [n for n in driver.instances() if re.fullmatch(rf"{part}-\d+", n)]


# ---- the driver itself (no engine needed) ------------------------------------------------------------

def test_an_upload_is_one_entry_named_by_its_absolute_path() -> None:
    raw = upload_tar({"file": "/usr/local/etc/redis/start.sh", "content": "#!/bin/sh\n", "executable": True})
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        (entry,) = tar.getmembers()
        assert (entry.name, entry.mode, entry.uid, entry.gid, entry.size) == (
            "/usr/local/etc/redis/start.sh", 0o744, 0, 0, 10)
    with tarfile.open(fileobj=io.BytesIO(upload_tar({"file": "/etc/a.conf", "content": "x"}))) as tar:
        assert tar.getmembers()[0].mode == 0o644


def test_durations_and_cpus_are_read_as_the_provider_reads_them() -> None:
    assert [duration_ns(d) for d in ("5s", "60s", "1m30s", "500ms", "0s")] == [
        5 * 10**9, 60 * 10**9, 90 * 10**9, 5 * 10**8, 0]
    assert [nano_cpus(c) for c in ("0.5", "1", "1.0", "2")] == [5 * 10**8, 10**9, 10**9, 2 * 10**9]
    with pytest.raises(ValueError, match="Go duration"):
        duration_ns("5 seconds")


def test_an_input_the_driver_does_not_implement_stops_it_before_any_request() -> None:
    rendering = render_stack("dev")
    container = rendering.of_type("docker:index/container:Container")[0]
    container.inputs["privileged"] = True
    with pytest.raises(UnsupportedInputError, match="privileged"):
        StackDriver(rendering, {}, engine=Engine("unix:///nonexistent.sock"))


def test_the_critical_path_is_the_costliest_chain_of_waits() -> None:
    # A diamond: d waits for b and c, both for a; c is the slow branch. e stands alone.
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []}
    assert longest_chain(deps, {"a": 1, "b": 2, "c": 5, "d": 1, "e": 6}) == (7, ["a", "c", "d"])
    assert longest_chain(deps, {"a": 1, "b": 2, "c": 5, "d": 1, "e": 8}) == (8, ["e"])
    assert longest_chain({}, {}) == (0.0, [])


def test_every_image_of_the_stack_needs_a_local_tag() -> None:
    rendering = render_stack("dev")
    with pytest.raises(KeyError, match="not mapped to a local tag"):
        StackDriver(rendering, {}, engine=Engine("unix:///nonexistent.sock"))


# ---- the parts that start without an official entrypoint ---------------------------------------------

def _redis(stack: StackDriver, name: str, password: str | None) -> redis.Redis:
    return redis.Redis(host=stack.address(name), port=6379, password=password, socket_timeout=5,
                       decode_responses=True)


class TestTheWholeStack:
    """The whole dev stack with the monitoring part, up once per tier for the whole class (and removed before the
    tests below, which need the engine to themselves), in dependency order with health waits, as `pulumi up`
    creates it."""

    @pytest.fixture(scope="class", params=["small", "medium"])
    @classmethod
    def stack(cls, request: pytest.FixtureRequest, engine: Engine,
              images: dict[str, LocalImage]) -> Iterator[StackDriver]:
        tier = str(request.param)
        with driven(rendered(tier, images, monitored=True), images, engine) as driver:
            assert driver.up_seconds is not None and driver.dropped == []
            slowest = max(driver.timings.items(), key=lambda kv: kv[1])
            path_s, path = driver.critical_path()
            assert 0 < path_s <= driver.up_seconds + 1, (path_s, driver.up_seconds)
            measured(f"{tier}: the whole stack, {len(driver.instances())} containers, up and healthy in "
                     f"{driver.up_seconds:.1f}s; slowest {slowest[0]} {slowest[1]:.1f}s; critical path "
                     f"{path_s:.1f}s (up / critical path {driver.up_seconds / path_s:.2f}): "
                     + " -> ".join(f"{label.split(' ', 1)[1]} {driver.timings[label]:.1f}s"
                                   for label in path if driver.timings.get(label, 0) >= 0.5))
            yield driver

    def test_every_container_is_healthy_and_holds_the_rendered_inputs(self, stack: StackDriver) -> None:
        problems = {name: stack.mismatches(name) for name in stack.instances()}
        assert {name: p for name, p in problems.items() if p} == {}
        waited = [n for n in stack.instances() if stack.step(n).inputs.get("wait")]
        assert waited
        assert {n: stack.health(n) for n in waited} == dict.fromkeys(waited, "healthy")

    def test_uploads_arrive_byte_for_byte_owned_by_root_with_the_providers_modes(self, stack: StackDriver) -> None:
        checked = 0
        for name in stack.instances():
            if stack.inspect(name)["State"]["Running"] is not True:
                continue
            for path, (content, mode) in stack.uploads(name).items():
                stat = stack.exec(name, ["stat", "-c", "%a %u %g", path])
                assert stat.stdout.split() == [f"{mode:o}", "0", "0"], (name, path, stat)
                got = stack.exec(name, ["cat", path])
                assert got.stdout.encode() == content, (name, path)
                checked += 1
        assert checked

    def test_nginx_answers_on_the_public_port_through_every_gateway(self, stack: StackDriver) -> None:
        port = public_port(stack)
        gateways = containers_of(stack, "api-gateway")
        assert gateways
        status, body = http_get(f"http://127.0.0.1:{port}/nginx-health")
        assert (status, body) == (200, "ok\n")
        requests = 10 * len(gateways)
        # A path no health check asks for, so each gateway's log shows which of these requests it served.
        path = f"/?banyan-e2e={time.time_ns()}"
        started = time.monotonic()
        for _ in range(requests):
            status, body = http_get(f"http://127.0.0.1:{port}{path}")
            # The placeholder gateway is python's http.server listing an empty directory.
            assert status == 200 and "Directory listing for /" in body
        per_request_ms = (time.monotonic() - started) * 1000 / requests

        def served() -> dict[str, int]:
            return {g: stack.logs(g, tail=None).count(f'"GET {path} HTTP/1.1" 200') for g in gateways}

        # Each gateway logs a request as it answers it; least_conn spreads requests that arrive one by one
        # over all gateways (round robin among equally idle ones).
        wait_until(lambda: sum(served().values()) >= requests, timeout_s=10, what="every request in a gateway log")
        counts = served()
        assert sum(counts.values()) == requests
        assert all(counts.values()), counts
        measured(f"{len(gateways)} gateways behind nginx: {requests} requests, {per_request_ms:.1f} ms each, "
                 f"served per gateway {sorted(counts.values())}")

    def test_services_answer_on_their_port_from_the_host(self, stack: StackDriver) -> None:
        services = containers_of(stack, "user-service") + containers_of(stack, "order-service")
        assert services
        for name in services:
            port = dict(e.split("=", 1) for e in stack.step(name).inputs["envs"])["PORT"]
            status, _ = http_get(f"http://{stack.address(name)}:{port}/")
            assert status == 200, name

    def test_redis_answers_only_with_the_rendered_password(self, stack: StackDriver) -> None:
        nodes = containers_of(stack, "redis-node")
        assert nodes
        password = stack.env(nodes[0])["REDIS_PASSWORD"]
        for name in nodes:
            assert _redis(stack, name, password).ping() is True
            with pytest.raises(redis.AuthenticationError):
                _redis(stack, name, None).ping()
            with pytest.raises(redis.AuthenticationError):
                _redis(stack, name, password + "x").ping()
        if len(nodes) == 1:
            client = _redis(stack, nodes[0], password)
            assert client.set("banyan:e2e", "1") and client.get("banyan:e2e") == "1"
            return
        # Cluster: the creation step exited 0, and every node sees all nodes serving all 16384 slots.
        assert stack.exit_codes["redis-cluster-create"] == 0, stack.container_logs.get("redis-cluster-create")
        for name in nodes:
            info = _redis(stack, name, password).cluster("INFO")
            assert (info["cluster_state"], int(info["cluster_slots_assigned"]), int(info["cluster_known_nodes"])) == (
                "ok", 16384, len(nodes)), (name, info)
        # A key is written through the node that owns its slot (the others answer MOVED).
        owners = []
        for name in nodes:
            try:
                _redis(stack, name, password).set("banyan:e2e", "1")
                owners.append(name)
            except redis.exceptions.MovedError:
                pass
        assert len(owners) == 1

    def test_redis_runs_as_an_unprivileged_user(self, stack: StackDriver) -> None:
        """start.sh owns the start: as root it gives /data to the redis user and drops to it."""
        for name in containers_of(stack, "redis-node"):
            status = stack.exec(name, ["cat", "/proc/1/status"]).stdout
            uid = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
            assert uid and uid[1] != "0", f"{name}: redis-server runs as uid {uid[1] if uid else '?'}"


    def test_postgres_primary_lets_the_app_role_in_and_runs_unprivileged(self, stack: StackDriver) -> None:
        password = stack.env("postgres-primary")["POSTGRES_APP_PASSWORD"]
        assert _psql(stack, "postgres-primary", "SELECT current_user", password)[:2] == (0, "banyan")
        # The server runs as the postgres user, not root, on our entrypoint (the image has none of its own).
        status = stack.exec("postgres-primary", ["cat", "/proc/1/status"]).stdout
        assert not re.search(r"^Uid:\s+0\b", status, re.MULTILINE), status

    def test_postgres_replicas_stream_from_the_primary(self, stack: StackDriver) -> None:
        replicas = containers_of(stack, "postgres-replica")
        streaming = stack.exec("postgres-primary", [
            "psql", "-X", "-A", "-t", "-U", "postgres", "-c",
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"]).stdout.strip()
        assert streaming == str(len(replicas))

    def test_rabbitmq_admin_manages_and_the_apps_user_does_not(self, stack: StackDriver) -> None:
        status, whoami = _management(stack, "/api/whoami")
        assert status == 200 and whoami["name"] == stack.env("rabbitmq-1")["RABBITMQ_DEFAULT_USER"]
        assert "administrator" in str(whoami.get("tags"))
        # The applications' user (the one in every service's RABBITMQ_URL) has no management tags.
        status, _ = _management(stack, "/api/whoami", "BANYAN_RABBITMQ_APP_USER", "BANYAN_RABBITMQ_APP_PASSWORD")
        assert status == 401
        status, users = _management(stack, "/api/users")
        assert status == 200 and "guest" not in {u["name"] for u in users}
        # The Prometheus plugin stays enabled although the uploaded enabled_plugins replaces the image's.
        prometheus = stack.exec("rabbitmq-1", ["rabbitmq-plugins", "-q", "is_enabled", "rabbitmq_prometheus"])
        assert prometheus.exit_code == 0, prometheus.stdout + prometheus.stderr

    def test_rabbitmq_nodes_form_one_cluster(self, stack: StackDriver) -> None:
        status, nodes = _management(stack, "/api/nodes")
        assert status == 200, nodes
        running = sorted(n["name"] for n in nodes if n.get("running"))
        assert running == sorted(f"rabbit@{n}" for n in containers_of(stack, "rabbitmq")), running

    def test_prometheus_scrapes_every_part_and_an_alert_is_read_through_its_published_port(
            self, stack: StackDriver) -> None:
        """From the host, on the port the stack publishes on loopback only: every target the rendered config
        lists answers its scrape, every rule loads, Alertmanager is known; then 150 messages on a queue no one
        consumes turn BanyanQueueDepthHigh pending (its shipped `for:` of 2 minutes would make it fire)."""
        port = int(stack.step("prometheus").inputs["ports"][0]["external"])
        assert stack.step("prometheus").inputs["ports"][0]["ip"] == "127.0.0.1"

        def api(path: str) -> Any:
            status, body = http_get(f"http://127.0.0.1:{port}/api/v1/{path}")
            assert status == 200, (path, body)
            return json.loads(body)["data"]

        config = yaml.safe_load(stack.uploads("prometheus")["/etc/prometheus/prometheus.yml"][0])
        listed = {(job["job_name"], t) for job in config["scrape_configs"]
                  for static in job["static_configs"] for t in static["targets"]}

        def scraped() -> dict[tuple[str, str], str]:
            return {(t["labels"]["job"], t["discoveredLabels"]["__address__"]): t["health"]
                    for t in api("targets?state=active")["activeTargets"]}

        waited = wait_until(lambda: scraped() == dict.fromkeys(listed, "up"), timeout_s=60,
                            what=f"every one of the {len(listed)} scrape targets up")
        # cAdvisor's view, as Prometheus keeps it: every running container of the stack, and only those, with the
        # memory limit it was given (what BanyanContainerMemoryHigh divides by).
        running = [n for n in stack.instances() if stack.inspect(n)["State"]["Running"]]
        limits = {str(stack.step(n).inputs["name"]): int(stack.step(n).inputs["memory"]) * 2**20 for n in running}
        ours = {str(stack.step(n).inputs["name"]) for n in stack.instances()}

        def memory_limits() -> dict[str, int]:
            found = api("query?query=" + urllib.parse.quote('container_spec_memory_limit_bytes{job="cadvisor"}'))
            return {r["metric"]["name"]: int(float(r["value"][1])) for r in found["result"]}

        wait_until(lambda: {k: v for k, v in memory_limits().items() if k in limits} == limits, timeout_s=60,
                   what="cAdvisor's memory limit of every running container")
        assert set(memory_limits()) <= ours, set(memory_limits()) - ours
        groups = api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert rules and all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
        (alertmanager,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
        assert [a["url"] for a in api("alertmanagers")["activeAlertmanagers"]] == [
            f"http://{alertmanager}/api/v2/alerts"]
        assert all(r["state"] == "inactive" for r in rules if r["type"] == "alerting"
                   and r["name"] == "BanyanQueueDepthHigh")

        queue = f"banyan-e2e-depth-{time.time_ns()}"
        depth = 150
        assert _management(stack, f"/api/queues/%2F/{queue}", method="PUT",
                           body={"durable": True, "arguments": {"x-queue-type": "quorum"}})[0] in (201, 204)
        for i in range(depth):
            status, routed = _management(stack, "/api/exchanges/%2F/amq.default/publish", method="POST",
                                         body={"properties": {}, "routing_key": queue, "payload": str(i),
                                               "payload_encoding": "string"})
            assert (status, routed) == (200, {"routed": True})
        started = time.monotonic()

        def pending() -> list[dict[str, Any]]:
            return [a for a in api("alerts")["alerts"]
                    if a["labels"]["alertname"] == "BanyanQueueDepthHigh" and a["labels"].get("queue") == queue]

        wait_until(lambda: bool(pending()), timeout_s=30, what="BanyanQueueDepthHigh pending for the queue")
        (alert,) = pending()
        assert alert["state"] == "pending" and float(alert["value"]) == depth, alert
        measured(f"monitoring: all {len(listed)} targets up (waited {waited:.1f}s for them); "
                 f"BanyanQueueDepthHigh pending {time.monotonic() - started:.1f}s after {depth} messages "
                 f"(scrape every {SCRAPE_S}s, evaluation every {EVALUATE_S}s)")


# ---- the data tier's own entrypoints: start-up and credentials --------------------------------------
def _psql(stack: StackDriver, instance: str, query: str, password: str) -> tuple[int, str, str]:
    result = stack.exec(instance, ["psql", "-X", "-A", "-t", "-w", "-h", "127.0.0.1", "-U", "banyan", "-d", "banyan",
                                   "-c", query], env={"PGPASSWORD": password})
    return result.exit_code, result.stdout.strip(), result.stderr


def _management(stack: StackDriver, path: str, user_env: str = "RABBITMQ_DEFAULT_USER",
                password_env: str = "RABBITMQ_DEFAULT_PASS", *, env: dict[str, str] | None = None,
                method: str = "GET", body: Any = None) -> tuple[int, Any]:
    """A request (GET unless said) on node 1's published management API, as the user whose name and password
    `stack`'s node 1 (or `env`, another deployment's environment of it) holds under those keys."""
    node = "rabbitmq-1"
    env = env or stack.env(node)
    token = base64.b64encode(f"{env[user_env]}:{env[password_env]}".encode()).decode()
    port = stack.step(node).inputs["ports"][0]["external"]
    status, text = http_get(f"http://127.0.0.1:{port}{path}", method=method, body=body,
                            headers={"Authorization": f"Basic {token}"})
    return status, json.loads(text) if status == 200 else text


def _rotated(value: Any) -> Any:
    """Every generated secret replaced, as new RandomPassword results would be after a destroy and up."""
    if isinstance(value, str):
        return value.replace("mocksecret", "rotatedpw0")
    if isinstance(value, Secret):
        return Secret(_rotated(value.value))
    if isinstance(value, dict):
        return {k: _rotated(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rotated(v) for v in value]
    return value


def rotated(rendering: Rendering) -> Rendering:
    return dataclasses.replace(rendering, resources=[dataclasses.replace(r, inputs=_rotated(r.inputs))
                                                     for r in rendering.resources])


def test_destroy_then_up_with_new_passwords_keeps_the_data_and_the_new_passwords_work(
        engine: Engine, images: dict[str, LocalImage]) -> None:
    """Volumes outlive a destroy; the passwords of the next `up` are new. The entrypoints reconcile them at start:
    the data is there, the new passwords log in and the old ones no longer do."""
    first = rendered("medium", images)
    second = rotated(first)
    select = parts("postgres", "rabbitmq")
    before = StackDriver(first, image_mapping(first, images), engine=engine, select=select)
    after = StackDriver(second, image_mapping(second, images), engine=engine, select=select)
    before.purge()
    try:
        before.up()
        old_pg = before.env("postgres-primary")["POSTGRES_APP_PASSWORD"]
        assert _psql(before, "postgres-primary", "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)",
                     old_pg)[0] == 0
        before.down(volumes=False)
        started = time.monotonic()
        after.up()
        measured(f"medium postgres + rabbitmq up again on retained volumes with new passwords in "
                 f"{time.monotonic() - started:.1f}s")
        new_pg = after.env("postgres-primary")["POSTGRES_APP_PASSWORD"]
        assert new_pg != old_pg
        assert _psql(after, "postgres-primary", "SELECT x FROM kept", new_pg)[:2] == (0, "42")
        code, _, err = _psql(after, "postgres-primary", "SELECT 1", old_pg)
        assert code != 0 and "password authentication failed" in err
        for replica in ("postgres-replica-1", "postgres-replica-2"):
            assert _psql(after, replica, "SELECT x FROM kept", new_pg)[:2] == (0, "42"), replica
        status, whoami = _management(after, "/api/whoami")
        assert status == 200, whoami
        assert _management(after, "/api/whoami", env=before.env("rabbitmq-1"))[0] == 401
    finally:
        after.down(volumes=False)
        before.down(volumes=True)

