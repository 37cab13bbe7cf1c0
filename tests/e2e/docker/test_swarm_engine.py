"""The swarm stack (Pulumi.swarm.yaml) on a real Docker engine in swarm mode, images built from Debian's packages.

    sudo ./scripts/docker-engine && sudo ./scripts/build-images
    sudo .venv/bin/pytest tests/e2e/docker/test_swarm_engine.py -rA

The engine is put in swarm mode for this module (`docker swarm init` on one node, as the Engine API's
/swarm/init) and leaves it afterwards (`docker swarm leave --force`), so the other e2e suites find the engine as
before; an engine already in swarm mode is used as it is and left so. The module holds the e2e lock (the
fixtures of test_docker_engine.py). swarm_driver.py creates the rendered resources as pulumi-docker would and
waits for convergence as its convergeConfig does; rolling updates and rollbacks are Swarm's own machinery.

The stack is the medium tier, rendered for the local servers' versions, with the changes this 2-CPU test host
needs: every reservation is lowered to 10 millicores and 32 MiB (Swarm schedules by reservations, and the medium
tier reserves 30 CPUs; the limits stay the tier's); each business service runs BANYAN_SWARM_SERVICE_INSTANCES
tasks (default 2, the tier's 10 with `=10`); and on a kernel without IPVS (the routing mesh's load balancer, absent
here) Nginx is published in host mode, one task. The data tier, the 5 gateways and the update policy are the tier's.
"""

from __future__ import annotations

import http.client
import io
import itertools
import json
import os
import re
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime

import pytest

from components.nginx.config import supports_resolve
from model.config import parse_config
from model.spec import NginxSpec
from model.tiers import resolve
from testkit import render_stack
from testkit.render import apply_sets, read_stack_file, to_engine_config
from tests.e2e.docker.driver import Engine, EngineError, LocalImage, StackError, local_stack_sets, wait_until
from tests.e2e.docker.swarm_driver import SwarmDriver, swarm_image_mapping, swarm_state
from tests.e2e.docker.test_docker_engine import engine, images, measured

__all__ = ["engine", "images"]  # the session fixtures, shared with the main suite (same lock)

TIER = "medium"
PARTS_WITH_RESOURCES = ["gateway", "services[0]", "services[1]", "postgres", "rabbitmq", "redis", "nginx"]
ROLLOUT_TAG = "e2e-rollout"
BROKEN_TAG = "e2e-broken"


# The routing mesh (and a service's virtual IP) is IPVS in the kernel; a kernel without it (this test host's) cannot
# publish through the mesh, so the stack publishes in host mode there (banyan:swarm.publish_mode), one Nginx task.
IPVS = os.path.isdir("/proc/sys/net/ipv4/vs")


def sets(images: dict[str, LocalImage], **extra: object) -> dict[str, object]:
    out: dict[str, object] = {"tier": TIER, **local_stack_sets(images)}
    if not IPVS:
        out["swarm.publish_mode"] = "host"
        out["nginx.instances"] = 1
    for part in PARTS_WITH_RESOURCES:
        out[f"{part}.resources.requests.cpu_millis"] = 10
        out[f"{part}.resources.requests.memory_mib"] = 32
    count = int(os.environ.get("BANYAN_SWARM_SERVICE_INSTANCES", "2"))
    out["services[0].instances"] = out["services[1].instances"] = count
    out.update(extra)
    return out


@pytest.fixture(scope="module")
def swarm(engine: Engine) -> Iterator[Engine]:
    before = swarm_state(engine)
    # `docker swarm init` also makes docker_gwbridge (the bridge tasks reach the host through), and leaving the
    # swarm keeps it: removed again when this module made it.
    had_gwbridge = engine.call("GET", "/networks/docker_gwbridge", missing_ok=True) is not None
    if before not in ("inactive", "active"):
        pytest.fail(f"the engine's swarm state is {before!r}: neither a swarm to use nor none")
    if before == "inactive":
        started = time.monotonic()
        engine.call("POST", "/swarm/init", json_body={"ListenAddr": "127.0.0.1:2377", "AdvertiseAddr": "127.0.0.1"})
        measured(f"docker swarm init in {time.monotonic() - started:.1f}s")
    try:
        yield engine
    finally:
        if before == "inactive":
            engine.call("POST", "/swarm/leave", query={"force": True}, timeout_s=60)
            if not had_gwbridge:
                try:
                    engine.call("DELETE", "/networks/docker_gwbridge", missing_ok=True)
                except EngineError as exc:  # still in use by a container of someone else's: leave it
                    measured(f"docker_gwbridge kept: {exc}")
            assert swarm_state(engine) == "inactive"


def stack_nginx(images: dict[str, LocalImage]) -> NginxSpec:
    raw, _ = to_engine_config(apply_sets(read_stack_file("swarm"), sets(images)))
    config, _ = parse_config(raw)
    assert config is not None
    spec, problems = resolve(config, project="banyan", stack="swarm")
    assert spec is not None, problems
    return spec.nginx


def tag_image(engine: Engine, source: str, tag: str) -> str:
    repo, _, base = source.rpartition(":")
    engine.call("POST", f"/images/{source}/tag", query={"repo": repo, "tag": f"{base}-{tag}"})
    return f"{repo}:{base}-{tag}"


def build_broken(engine: Engine, source: str) -> str:
    """A release of the gateway image whose server is missing (python removed): its tasks exit at start. Built
    locally from `source` (no registry), as a broken release would be pushed."""
    repo, _, base = source.rpartition(":")
    tag = f"{repo}:{base}-{BROKEN_TAG}"
    dockerfile = f"FROM {source}\nRUN rm -f /usr/bin/python /usr/bin/python3*\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    status, raw = engine.request("POST", "/build", query={"t": tag, "rm": True, "labels": {"banyan.e2e": "broken"}},
                                 body=buf.getvalue(), content_type="application/x-tar", timeout_s=300)
    assert status == 200 and b'"error"' not in raw, raw[-500:]
    return tag


@pytest.fixture(scope="module")
def made_images(swarm: Engine) -> Iterator[list[str]]:
    """Tags this module adds to the engine; removed (untagged) afterwards."""
    made: list[str] = []
    yield made
    for tag in made:
        swarm.call("DELETE", f"/images/{tag}", query={"force": True}, missing_ok=True)


@pytest.fixture(scope="module")
def stack(swarm: Engine, images: dict[str, LocalImage], made_images: list[str]) -> Iterator[SwarmDriver]:
    """The stack up from nothing for the module (`made_images` first, so its tags outlive the services)."""
    rendering = render_stack("swarm", set=sets(images))
    driver = SwarmDriver(rendering, swarm_image_mapping(rendering, images), engine=swarm)
    driver.purge()
    try:
        driver.up()
        slowest = max(driver.timings.items(), key=lambda kv: kv[1])
        tasks = sum(s.inputs["mode"]["replicated"]["replicas"] for s in driver.iter_services())
        measured(f"{TIER} swarm stack from nothing ({'routing mesh' if IPVS else 'host-mode publishing: no IPVS'}): "
                 f"{len(driver.steps)} resources, {tasks} tasks, converged in "
                 f"{driver.up_seconds:.1f}s; slowest {slowest[0]} {slowest[1]:.1f}s")
        yield driver
    finally:
        driver.down(volumes=True)


def http_get(url: str, *, timeout_s: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def public_url(stack: SwarmDriver) -> str:
    port = stack.service("nginx").inputs["endpointSpec"]["ports"][0]["publishedPort"]
    return f"http://127.0.0.1:{port}"


def test_every_service_converged_and_a_second_up_changes_nothing(stack: SwarmDriver,
                                                                  images: dict[str, LocalImage]) -> None:
    for s in stack.iter_services():
        assert stack.running(stack.service_id(s.instance)) == s.inputs["mode"]["replicated"]["replicas"], s.instance
    # What a second `up` would send: the same rendering (no change) and, service by service, the spec the
    # engine holds (nothing to update).
    again = render_stack("swarm", set=sets(images))
    assert stack.changes(again) == []
    assert stack.spec_drift() == {}


def test_a_request_through_nginx_reaches_every_gateway_task(stack: SwarmDriver) -> None:
    url = public_url(stack)
    assert http_get(f"{url}/nginx-health") == (200, "ok\n")
    gateways = stack.containers("api-gateway")
    assert len(gateways) == 5
    path = f"/?banyan-swarm-e2e={time.time_ns()}"
    requests = 10 * len(gateways)
    for _ in range(requests):
        status, body = http_get(f"{url}{path}")
        assert status == 200 and "Directory listing for /" in body

    def served() -> list[int]:
        counts = []
        for container in gateways:
            _, raw = stack.engine.request("GET", f"/containers/{container}/logs", query={"stdout": 1, "stderr": 1})
            counts.append(raw.decode(errors="replace").count(f'"GET {path} HTTP/1.1" 200'))
        return counts

    wait_until(lambda: sum(served()) >= requests, timeout_s=10, what="every request in a gateway task's log")
    counts = served()
    assert sum(counts) == requests and all(counts), counts
    measured(f"{len(gateways)} gateway tasks behind nginx (tasks.api-gateway): served {sorted(counts)}")


def test_postgres_replicas_stream_from_the_primary(stack: SwarmDriver) -> None:
    streaming = stack.exec("postgres-primary", [
        "psql", "-X", "-A", "-t", "-U", "postgres", "-c",
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"])
    assert streaming.stdout.strip() == "2", streaming
    # The app role logs in over TCP with the password that reached the task as a Swarm secret file.
    password = stack.secret("postgres", "POSTGRES_APP_PASSWORD")
    login = stack.exec("postgres-replica-1", ["psql", "-X", "-A", "-t", "-w", "-h", "127.0.0.1", "-U", "banyan",
                                              "-d", "banyan", "-c", "SELECT pg_is_in_recovery()"],
                       env={"PGPASSWORD": password})
    assert (login.exit_code, login.stdout.strip()) == (0, "t"), login


def test_no_secret_value_is_in_a_service_spec_and_secrets_are_files(stack: SwarmDriver) -> None:
    password = stack.secret("postgres", "POSTGRES_APP_PASSWORD")
    for s in stack.iter_services():
        assert password not in str(stack.inspect(s.instance)["Spec"]), s.instance
    mode = stack.exec("postgres-primary", ["stat", "-c", "%a %u", "/run/secrets/POSTGRES_APP_PASSWORD"])
    assert mode.stdout.split() == ["400", "0"], mode


def test_rabbitmq_nodes_form_one_cluster(stack: SwarmDriver) -> None:
    status = stack.exec("rabbitmq-1", ["rabbitmqctl", "-q", "cluster_status", "--formatter", "json"])
    assert status.exit_code == 0, status
    running = sorted(json.loads(status.stdout)["running_nodes"])
    assert running == [f"rabbit@rabbitmq-{i}" for i in (1, 2, 3)]


def test_redis_cluster_serves_every_slot(stack: SwarmDriver) -> None:
    password = stack.secret("redis", "REDIS_PASSWORD")
    for node in ("redis-node-1", "redis-node-2", "redis-node-3"):
        info = stack.exec(node, ["redis-cli", "cluster", "info"], env={"REDISCLI_AUTH": password}).stdout
        fields = dict(line.strip().split(":", 1) for line in info.splitlines() if ":" in line)
        assert (fields["cluster_state"], fields["cluster_slots_assigned"], fields["cluster_known_nodes"]) == (
            "ok", "16384", "3"), (node, info)
    # The creator stays, its health the cluster's state.
    assert stack.running(stack.service_id("redis-cluster-create")) == 1


# A client on the overlay network (run in a user-service task, whose image has python): it resolves
# tasks.api-gateway before every request and asks one of the addresses, as Nginx >= 1.27.3 follows the gateway
# tasks (re-resolving at run time); it stops when the stop file appears and prints what it saw.
OVERLAY_CLIENT = r"""
import os, random, socket, sys, time, urllib.request
ok, failed = 0, []
while not os.path.exists("/tmp/banyan-e2e-stop"):
    try:
        addresses = sorted({a[4][0] for a in socket.getaddrinfo("tasks.api-gateway", 3003, socket.AF_INET)})
        address = random.choice(addresses)
        with urllib.request.urlopen(f"http://{address}:3003/", timeout=5) as r:
            r.read()
        ok += 1
    except Exception as exc:
        failed.append(f"{type(exc).__name__}: {exc}")
    time.sleep(0.05)
print(ok, len(failed), *failed[:5], sep="\n")
"""


class OverlayLoad:
    """OVERLAY_CLIENT running in a user-service task for as long as the block runs."""

    def __init__(self, stack: SwarmDriver) -> None:
        self.stack, self.ok, self.failed, self.failures = stack, 0, 0, []  # type: ignore[var-annotated]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._out = ""

    def _run(self) -> None:
        self._out = self.stack.exec("user-service", ["python3", "-c", OVERLAY_CLIENT], timeout_s=900).stdout

    def __enter__(self) -> OverlayLoad:
        self.stack.exec("user-service", ["rm", "-f", "/tmp/banyan-e2e-stop"])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.exec("user-service", ["touch", "/tmp/banyan-e2e-stop"])
        self._thread.join(timeout=60)
        lines = self._out.splitlines()
        # The count of failures, then the first five of them.
        self.ok, self.failed, self.failures = int(lines[0]), int(lines[1]), lines[2:]


class Load:
    """Requests through Nginx, one after another, for as long as it runs; every failure kept."""

    def __init__(self, url: str) -> None:
        self.url, self.ok, self.failures = url, 0, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, _ = http_get(self.url, timeout_s=10)
                if status == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"HTTP {status}")
            # A connection cut mid-response (IncompleteRead, RemoteDisconnected) is a failed request too; uncaught,
            # it ended this thread and with it the count (seen in a CI run).
            except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _created(task: dict[str, object]) -> float:
    text = str(task["CreatedAt"])
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", text.replace("Z", "+00:00"))).timestamp()


def test_a_gateway_image_change_rolls_two_at_a_time_with_no_failed_request_then_a_broken_one_rolls_back(
        stack: SwarmDriver, swarm: Engine, images: dict[str, LocalImage], made_images: list[str]) -> None:
    base = images["python"].tag
    service_id = stack.service_id("api-gateway")
    # A new image reference for the gateway (a new tag of the local python image): what a release changes.
    new_ref = "python:3.12.15-alpine"
    rendering = render_stack("swarm", set=sets(images, **{"gateway.image": new_ref}))
    new_tag = tag_image(swarm, base, ROLLOUT_TAG)
    made_images.append(new_tag)
    started = time.monotonic()
    with Load(public_url(stack) + "/") as load, OverlayLoad(stack) as direct:
        changes = stack.update(rendering, {new_ref: new_tag})
    took = time.monotonic() - started
    assert [a for a, _ in changes] == ["update"], changes
    # The gateway tasks themselves: a new one serves once it is in DNS (healthy), an old one serves on until it has
    # been out of DNS for the drain delay. No request of a client that follows DNS fails.
    assert direct.failed == 0 and direct.ok > 0, direct.failures
    # Through Nginx: none fails where Nginx re-resolves the tasks (>= 1.27.3); an older one (Debian's, on this test
    # host) keeps the addresses it resolved at start, which the rollout replaces: measured, not asserted.
    if supports_resolve(stack_nginx(images)):
        assert load.failures == [] and load.ok > 0, load.failures[:5]
    new_tasks = [t for t in stack.tasks(service_id, desired=None) if t["Spec"]["ContainerSpec"]["Image"] == new_tag]
    starts = sorted(_created(t) for t in new_tasks)
    assert len(starts) == 5
    # Batches of at most two, each at least the update delay (10 s) after the previous one became healthy.
    batches: list[list[float]] = []
    for t in starts:
        if batches and t - batches[-1][0] < 5:
            batches[-1].append(t)
        else:
            batches.append([t])
    assert [len(b) for b in batches] == [2, 2, 1], starts
    assert all(b[0] - a[0] >= 10 for a, b in itertools.pairwise(batches)), starts
    measured(f"gateway image rolled out in {took:.1f}s, batches {[len(b) for b in batches]}; meanwhile "
             f"{direct.ok} requests to the gateway tasks on the overlay, none failed; {load.ok} through nginx "
             f"{stack_nginx(images).image}, {len(load.failures)} failed")

    # A broken release: the gateway's server is missing from it. Swarm rolls the update back by itself and the
    # update fails with the reason.
    broken_ref = "python:3.12.16-alpine"
    broken = render_stack("swarm", set=sets(images, **{"gateway.image": broken_ref}))
    broken_tag = build_broken(swarm, new_tag)
    made_images.append(broken_tag)
    started = time.monotonic()
    with OverlayLoad(stack) as direct, pytest.raises(StackError) as failed:
        stack.update(broken, {broken_ref: broken_tag})
    message = str(failed.value)
    measured(f"broken gateway image rolled back in {time.monotonic() - started:.1f}s: "
             f"{message.splitlines()[0]}; {direct.ok} requests to the gateway tasks meanwhile, "
             f"{direct.failed} failed")
    assert "service rollback completed" in message and "update rolled back due to failure" in message, message
    assert "non-zero exit" in message or "task: " in message, message
    assert direct.failed == 0 and direct.ok > 0, direct.failures
    service = stack.inspect("api-gateway")
    assert service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == new_tag
    running = [t for t in stack.tasks(service_id) if t["Status"]["State"] == "running"]
    assert len(running) == 5 and {t["Spec"]["ContainerSpec"]["Image"] for t in running} == {new_tag}


def test_the_engine_leaves_swarm_mode_for_the_other_suites(swarm: Engine) -> None:
    """Runs last in this module (pytest keeps file order): the swarm is still up here; the fixture's teardown
    leaves it and asserts `inactive`. Here: the bridge networks the Docker suite creates still work."""
    made = swarm.call("POST", "/networks/create", json_body={"Name": "banyan-swarm-e2e-probe", "Driver": "bridge"})
    swarm.call("DELETE", f"/networks/{made['Id']}")

