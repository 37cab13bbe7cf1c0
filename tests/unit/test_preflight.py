"""The Docker preflight's rules (model/preflight.py) on hand-made engine snapshots, and its thin I/O layer
(infra/preflight.py) against fake sockets: no engine needed."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings

from infra import preflight as io
from model.preflight import CONFIG_LABEL, EngineContainer, EngineSnapshot, check
from model.spec import PlatformSpec
from testkit import BanyanMocks
from tests.helpers import spec_for


def ours(instance: str, part: str, *, state: str = "running", ports: tuple[int, ...] = (),
         stack: str = "dev", project: str = "banyan") -> EngineContainer:
    labels = {"banyan.project": project, "banyan.stack": stack, "banyan.part": part, "banyan.instance": instance}
    return EngineContainer(f"{project}-{stack}-{instance}", state, labels, frozenset(ports))


def engine(*containers: EngineContainer) -> EngineSnapshot:
    return EngineSnapshot(tuple(containers))


def rabbit(count: int, **kw: object) -> list[EngineContainer]:
    return [ours(f"rabbitmq-{i}", "rabbitmq", **kw) for i in range(1, count + 1)]  # type: ignore[arg-type]


def redis(count: int, *, cluster: bool | None = None, state: str = "running") -> list[EngineContainer]:
    nodes = [ours(f"redis-node-{i}", "redis", state=state) for i in range(1, count + 1)]
    if cluster if cluster is not None else count > 1:
        nodes.append(ours("redis-cluster-create", "redis", state="exited"))
    return nodes


def problems(spec: PlatformSpec, snapshot: EngineSnapshot) -> list[str]:
    return [p.render() for p in check(spec, snapshot).problems]


# ---- the host's size --------------------------------------------------------------------------------------

def test_a_cpu_or_memory_limit_above_the_host_is_refused_naming_the_part_key() -> None:
    two_cpus = EngineSnapshot((), cpus=2, memory_bytes=24 << 30)
    found = problems(spec_for("dev", tier="large"), two_cpus)
    assert found == ['banyan:postgres.resources.limits.cpu_millis: got 4000; this engine\'s host has 2 CPUs and '
                     "Docker refuses a container limit above that (the large tier's value unless the key is set); "
                     "allowed here: at most 2000, or a smaller tier"]
    assert problems(spec_for("dev", tier="large", postgres__resources__limits__cpu_millis=2000), two_cpus) == []
    assert problems(spec_for("dev", tier="medium"), two_cpus) == []
    small_host = EngineSnapshot((), cpus=8, memory_bytes=6 << 30)
    (line,) = problems(spec_for("dev", tier="large"), small_host)
    assert line.startswith("banyan:postgres.resources.limits.memory_mib: got 8192; this engine's host has 6144 MiB")
    # An engine that did not say its size is not judged.
    assert problems(spec_for("dev", tier="large"), EngineSnapshot(())) == []


# ---- host ports -------------------------------------------------------------------------------------------

def test_a_port_published_by_another_stack_is_an_error_naming_key_port_holder_and_remedy() -> None:
    spec = spec_for("dev")
    (line,) = problems(spec, engine(ours("nginx", "nginx", stack="dev2", ports=(8080,))))
    assert line == (
        "banyan:nginx.port: got 8080; host port 8080 is already published by container banyan-dev2-nginx "
        "(banyan.stack dev2), so this stack's `up` would fail to start its container; choose another port for "
        "this stack (`pulumi config set --path banyan:nginx.port <free port>`), or free that port on the Docker host")


def test_our_own_containers_holding_our_ports_are_no_clash() -> None:
    spec = spec_for("dev")
    snapshot = engine(ours("nginx", "nginx", ports=(8080,)), ours("rabbitmq-1", "rabbitmq", ports=(15672,)))
    assert problems(spec, snapshot) == []


def test_every_clash_is_listed_with_whose_container_it_is() -> None:
    spec = spec_for("dev")
    stranger = EngineContainer("grafana", "running", {}, frozenset({15672}))
    other_project = ours("nginx", "nginx", project="shop", stack="dev", ports=(8080,))
    found = problems(spec, engine(stranger, other_project))
    assert len(found) == 2
    assert found[0].startswith("banyan:nginx.port: got 8080; host port 8080 is already published by container "
                               "shop-dev-nginx (banyan.project shop, banyan.stack dev)")
    assert found[1].startswith("banyan:rabbitmq.management_host_port: got 15672; host port 15672 is already "
                               "published by container grafana (no banyan.stack label)")
    assert "pulumi config set --path banyan:rabbitmq.management_host_port <free port>" in found[1]


def test_another_port_or_no_management_port_is_no_clash() -> None:
    taken = engine(ours("nginx", "nginx", stack="dev2", ports=(8080,)),
                   ours("rabbitmq-1", "rabbitmq", stack="dev2", ports=(15672,)))
    assert problems(spec_for("dev", nginx__port=8081, rabbitmq__management_host_port=15673), taken) == []
    assert len(problems(spec_for("dev", nginx__port=8081), taken)) == 1
    assert problems(spec_for("dev", nginx__port=8081, rabbitmq__management_host_port=None), taken) == []


def test_the_engines_list_is_read_as_it_answers() -> None:
    listed: list[dict[str, Any]] = [
        {"Id": "a1", "Names": ["/banyan-dev2-nginx"], "State": "running",
         "Labels": {"banyan.stack": "dev2", "banyan.project": "banyan"},
         "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                   {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                   {"IP": "0.0.0.0", "PrivatePort": 53, "PublicPort": 5353, "Type": "udp"},
                   {"PrivatePort": 443, "Type": "tcp"}]},
        {"Id": "b2", "Names": ["/stopped"], "State": "exited", "Labels": None, "Ports": []},
    ]
    snapshot = EngineSnapshot.from_container_list(listed)
    assert snapshot.containers == (
        EngineContainer("banyan-dev2-nginx", "running", {"banyan.stack": "dev2", "banyan.project": "banyan"},
                        frozenset({8080})),
        EngineContainer("stopped", "exited", {}, frozenset()),
    )
    # One container publishing the port on IPv4 and IPv6 is one problem.
    assert len(problems(spec_for("dev"), snapshot)) == 1


# ---- RabbitMQ ---------------------------------------------------------------------------------------------

RABBITMQ_3_13 = {"rabbitmq__image": "rabbitmq:3.13.7-management-alpine", "rabbitmq__version": "'3.13'"}


def test_a_rabbitmq_shrink_of_running_nodes_is_refused_with_the_procedure() -> None:
    (line,) = problems(spec_for("dev", tier="small", **RABBITMQ_3_13), engine(*rabbit(3)))
    assert line == (
        'banyan:tier: got "small"; RabbitMQ would shrink from 3 nodes to 1 (the small tier\'s count), but '
        "rabbitmq-2, rabbitmq-3 are running as cluster members; removing a node without taking it out of the "
        "cluster costs quorum queues their majority, so this is refused. Procedure, one node at a time, last first: "
        "on a remaining node run `rabbitmq-queues shrink rabbit@rabbitmq-3` (its quorum queue members leave while a "
        "majority is up), stop the node (`docker stop banyan-dev-rabbitmq-3`), run `rabbitmqctl forget_cluster_node "
        "rabbit@rabbitmq-3` on a remaining node. When one node is left it has paused (pause_minority): run "
        "`rabbitmqctl stop_app` and `rabbitmqctl start_app` on it. Then lower the count; allowed now: 3 nodes or "
        "more (growth is allowed)")


def test_a_shrink_set_by_the_nodes_key_names_that_key() -> None:
    (line,) = problems(spec_for("dev", tier="large", rabbitmq__nodes=3), engine(*rabbit(5)))
    assert line.startswith("banyan:rabbitmq.nodes: got 3; RabbitMQ would shrink from 5 nodes to 3, but "
                           "rabbitmq-4, rabbitmq-5 are running")
    # Only a shrink to one node passes through the pause of the last node,
    assert "stop_app" not in line
    # and only before 4.3, which reads no partition handling (Khepri).
    (to_one,) = problems(spec_for("dev", tier="small"), engine(*rabbit(3)))
    assert "forget_cluster_node" in to_one and "stop_app" not in to_one


def test_rabbitmq_growth_and_an_unchanged_count_are_allowed() -> None:
    assert problems(spec_for("dev", tier="medium"), engine(*rabbit(1))) == []
    assert problems(spec_for("dev", tier="large"), engine(*rabbit(3))) == []
    assert problems(spec_for("dev", tier="medium"), engine(*rabbit(3))) == []


def test_nodes_stopped_for_removal_pass_with_a_warning() -> None:
    nodes = [*rabbit(1), ours("rabbitmq-2", "rabbitmq", state="exited"), ours("rabbitmq-3", "rabbitmq",
                                                                                  state="exited")]
    findings = check(spec_for("dev", tier="small"), engine(*nodes))
    assert findings.problems == ()
    assert findings.warnings == (
        "RabbitMQ nodes rabbitmq-2, rabbitmq-3: stopped, and this `up` removes the container (its volume is kept); "
        "it must have been taken out of the cluster first (`rabbitmqctl forget_cluster_node`)",)


def test_the_wrong_node_stopped_is_still_refused() -> None:
    nodes = [ours("rabbitmq-1", "rabbitmq", state="exited"), *rabbit(3)[1:]]
    (line,) = problems(spec_for("dev", tier="small"), engine(*nodes))
    assert "rabbitmq-2, rabbitmq-3 are running" in line


def test_another_stacks_nodes_are_not_ours_to_count() -> None:
    theirs = [ours(f"rabbitmq-{i}", "rabbitmq", stack="prod-like") for i in (1, 2, 3)]
    assert problems(spec_for("dev", tier="small"), engine(*theirs)) == []


# ---- Redis ------------------------------------------------------------------------------------------------

def test_a_redis_mode_change_is_refused_with_the_procedure() -> None:
    (line,) = problems(spec_for("dev", tier="small"), engine(*redis(3)))
    assert line == (
        'banyan:tier: got "small"; Redis would change from a 3-node cluster (redis-node-1, redis-node-2, '
        "redis-node-3) to 1 node (standalone) (the small tier); a node-count decrease or a mode change on a live "
        "Redis orphans hash slots (or finds a cluster of another shape), so this is refused (a cluster may grow). "
        "Procedure: move the slots off the "
        "nodes to remove (`redis-cli --cluster reshard`, then `redis-cli --cluster del-node`) and stop them, or "
        "build a fresh cluster of the new shape and migrate the data (always so for standalone <-> cluster); "
        "allowed now: a 3-node cluster")


@pytest.mark.parametrize(("tier", "existing", "old", "new"), [
    ("medium", 6, "a 6-node cluster", "a 3-node cluster"),
    ("medium", 1, "1 node (standalone)", "a 3-node cluster"),
])
def test_a_redis_shrink_or_mode_change_on_a_live_redis_is_refused(tier: str, existing: int, old: str,
                                                                new: str) -> None:
    (line,) = problems(spec_for("dev", tier=tier), engine(*redis(existing)))
    assert line.startswith(f'banyan:tier: got "{tier}"; Redis would change from {old} (')
    assert f") to {new} (the {tier} tier);" in line


def test_the_redis_nodes_key_is_named_when_it_decided() -> None:
    (line,) = problems(spec_for("dev", tier="large", redis__nodes=3, redis__replicas_per_master=0),
                       engine(*redis(6)))
    assert line.startswith("banyan:redis.nodes: got 3; Redis would change from a 6-node cluster")


@pytest.mark.parametrize(("tier", "sets", "existing", "shape"), [
    ("large", {}, 3, "a 6-node cluster (3 masters x 1 replicas)"),
    ("medium", {"redis__nodes": 4}, 3, "a 4-node cluster (4 masters x 0 replicas)"),
])
def test_a_redis_cluster_may_grow_and_the_preview_says_how(tier: str, sets: dict[str, int], existing: int,
                                                           shape: str) -> None:
    findings = check(spec_for("dev", tier=tier, **sets), engine(*redis(existing)))
    assert findings.problems == ()
    (warning,) = [w for w in findings.warnings if w.startswith("Redis grows")]
    assert warning.startswith(f"Redis grows from a {existing}-node cluster (") and f"to {shape}:" in warning
    # Growing a standalone server into a cluster is a mode change, still refused.
    assert problems(spec_for("dev", tier="medium"), engine(*redis(1)))


def test_the_creation_step_is_not_a_node_and_an_unchanged_redis_passes() -> None:
    assert problems(spec_for("dev", tier="medium"), engine(*redis(3))) == []
    assert problems(spec_for("dev", tier="small"), engine(*redis(1))) == []
    # A node stopped for maintenance that the stack keeps is still a node of it.
    nodes = [*redis(3)[:2], ours("redis-node-3", "redis", state="exited"), redis(3)[3]]
    assert problems(spec_for("dev", tier="medium"), engine(*nodes)) == []


def test_redis_nodes_taken_out_and_stopped_pass_with_a_warning() -> None:
    nodes = [*redis(3, cluster=True), *(ours(f"redis-node-{i}", "redis", state="exited") for i in (4, 5, 6))]
    findings = check(spec_for("dev", tier="medium"), engine(*nodes))
    assert findings.problems == ()
    assert findings.warnings[0].startswith("Redis nodes redis-node-4, redis-node-5, redis-node-6: stopped")


def test_a_one_node_cluster_left_is_still_a_cluster_not_a_standalone_server() -> None:
    nodes = [ours("redis-node-1", "redis"), ours("redis-cluster-create", "redis", state="exited"),
             ours("redis-node-2", "redis", state="exited"), ours("redis-node-3", "redis", state="exited")]
    (line,) = problems(spec_for("dev", tier="small"), engine(*nodes))
    assert "Redis would change from a 1-node cluster (redis-node-1) to 1 node (standalone)" in line


# ---- PostgreSQL, and everything at once ---------------------------------------------------------------------

def test_a_postgres_replica_decrease_is_allowed() -> None:
    pg = [ours("postgres-primary", "postgres"), ours("postgres-replica-1", "postgres"),
          ours("postgres-replica-2", "postgres")]
    assert problems(spec_for("dev", tier="small"), engine(*pg)) == []


def test_every_problem_is_listed_in_one_run_error() -> None:
    spec = spec_for("dev", tier="small")
    findings = check(spec, engine(*rabbit(3), *redis(3), ours("nginx", "nginx", stack="dev2", ports=(8080,))))
    error = io.PreflightError(findings.problems, "at unix:///var/run/docker.sock")
    assert isinstance(error, pulumi.RunError)
    lines = str(error).splitlines()
    assert lines[0] == ("the Docker engine at unix:///var/run/docker.sock already holds what this stack would "
                        "break (3 problems); nothing was deployed:")
    assert [line.split(":", 2)[:2] for line in lines[1:4]] == [
        ["  - banyan", "nginx.port"], ["  - banyan", "tier"], ["  - banyan", "tier"]]
    assert lines[4].startswith("  (banyan:preflight: false turns this check off")


# ---- the I/O layer ----------------------------------------------------------------------------------------

def test_the_engine_is_located_as_the_provider_picks_it(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    sock.touch()
    assert io.locate({}, {"DOCKER_HOST": f"unix://{sock}"}) == io.Engine(f"unix://{sock}", str(sock))
    # The stack's docker:host wins over DOCKER_HOST, as in the provider.
    assert io.locate({"docker:host": "ssh://ops@build-host"}, {"DOCKER_HOST": f"unix://{sock}"}).skip_reason == (
        "docker:host is ssh://ops@build-host, not a local unix socket")
    assert io.locate({}, {"DOCKER_HOST": "tcp://10.0.0.5:2376"}).skip_reason == (
        "DOCKER_HOST is tcp://10.0.0.5:2376, not a local unix socket")
    assert io.locate({}, {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}).skip_reason == (
        "no Docker socket at /nonexistent/docker.sock (DOCKER_HOST)")
    assert io.locate({"docker:context": "remote"}, {}).skip_reason == (
        "the stack deploys through Docker context 'remote'")
    assert io.locate({}, {"DOCKER_CONTEXT": "default", "DOCKER_HOST": f"unix://{sock}"}).socket_path == str(sock)


@pytest.fixture
def fake_engine(tmp_path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """A unix socket that answers each connection with the next canned reply (b"" = accept, never answer)."""
    path = str(tmp_path / "engine.sock")
    replies: list[bytes] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.recv(65536)
            reply = replies.pop(0) if replies else b""
            if reply:
                conn.sendall(reply)
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, replies
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def _http(status: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def test_the_engine_is_read_over_its_socket(fake_engine: tuple[str, list[bytes]]) -> None:
    path, replies = fake_engine
    listed = [{"Id": "x", "Names": ["/banyan-dev2-nginx"], "State": "running", "Labels": {"banyan.stack": "dev2"},
               "Ports": [{"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}]}]
    replies.append(_http("200 OK", json.dumps(listed).encode()))
    replies.append(_http("200 OK", json.dumps({"NCPU": 2, "MemTotal": 24 << 30}).encode()))
    snapshot = io.read_engine(path)
    assert [(c.name, c.host_ports) for c in snapshot.containers] == [("banyan-dev2-nginx", frozenset({8080}))]
    assert (snapshot.cpus, snapshot.memory_bytes) == (2, 24 << 30)
    replies.append(_http("500 Internal Server Error", b'{"message": "boom"}'))
    with pytest.raises(ValueError, match="answered 500"):
        io.read_engine(path)
    replies.append(_http("200 OK", b'{"not": "a list"}'))
    with pytest.raises(ValueError, match="not a list"):
        io.read_engine(path)


@pytest.fixture
def warned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the preflight logs as Pulumi warnings."""
    logged: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *_, **__: logged.append(msg))
    return logged


def test_an_engine_that_never_answers_is_a_warning_within_the_timeout(
        fake_engine: tuple[str, list[bytes]], warned: list[str]) -> None:
    path, _ = fake_engine
    started = time.monotonic()
    io.check_engine(spec_for("dev"), {}, {"DOCKER_HOST": f"unix://{path}"})
    assert time.monotonic() - started < io.TIMEOUT_S + 2
    (err,) = warned
    assert f"preflight skipped: the Docker engine at unix://{path} could not be read within 3s" in err
    assert "host ports already published by other containers and RabbitMQ/Redis cluster shrinks were not checked" in err


def test_outside_mocks_a_refusal_of_the_real_engine_path_is_raised(fake_engine: tuple[str, list[bytes]]) -> None:
    path, replies = fake_engine
    listed = [{"Id": "x", "Names": ["/other"], "State": "running", "Labels": {},
               "Ports": [{"PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}]}]
    replies.append(_http("200 OK", json.dumps(listed).encode()))
    replies.append(_http("200 OK", b"{}"))
    with pytest.raises(io.PreflightError, match=rf"engine at unix://{path} already holds(.|\n)*container other"):
        io.check_engine(spec_for("dev"), {}, {"DOCKER_HOST": f"unix://{path}"})


def test_a_remote_engine_is_skipped_with_a_warning_that_says_what_was_not_checked(warned: list[str]) -> None:
    io.check_engine(spec_for("dev"), {"docker:host": "ssh://ops@build-host"}, dict(os.environ))
    assert warned == [
        "preflight skipped: docker:host is ssh://ops@build-host, not a local unix socket; host ports "
        "already published by other containers and RabbitMQ/Redis cluster shrinks were not checked"]


def test_the_program_reads_the_engine_only_outside_mocks(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(io, "check_engine", lambda spec, raw, environ: calls.append(environ))
    # The Kubernetes read (tests/unit/test_preflight_kubernetes.py) is not this test's.
    monkeypatch.setattr(io, "check_cluster", lambda spec, environ: None)
    monkeypatch.setattr(settings, "get_monitor", lambda: None)  # as under `pulumi preview`
    io.run(spec_for("dev"), {})
    assert calls == [os.environ]
    monkeypatch.setattr(settings, "get_monitor", lambda: pulumi_mocks.MockMonitor(BanyanMocks()))
    io.run(spec_for("dev"), {})
    io.run(spec_for("dev", preflight=False), {})
    io.run(spec_for("prod"), {})
    monkeypatch.setattr(settings, "get_monitor", lambda: None)
    io.run(spec_for("dev", preflight=False), {})
    io.run(spec_for("prod"), {})
    assert calls == [os.environ]


# ---- clustered nodes replaced together --------------------------------------------------------------------

def labelled(nodes: list[EngineContainer], digest: str) -> list[EngineContainer]:
    return [EngineContainer(c.name, c.state, {**c.labels, CONFIG_LABEL: digest}, c.host_ports) for c in nodes]


def test_a_config_change_of_several_running_nodes_is_warned_with_the_rolling_procedure() -> None:
    spec = spec_for("dev", tier="medium")
    digests = io.node_digests(spec)
    now = digests["rabbitmq-1"]
    same = check(spec, engine(*labelled(rabbit(3), now), *redis(3)), digests)
    assert not [w for w in same.warnings if "replace them together" in w], "an unchanged config warns nothing"
    changed = check(spec, engine(*labelled(rabbit(3), "0" * 16), *redis(3)), digests)
    [warning] = [w for w in changed.warnings if "replace them together" in w]
    assert warning.startswith("rabbitmq: this update changes the configuration of 3 running nodes "
                              "(rabbitmq-1, rabbitmq-2, rabbitmq-3)")
    for i in (1, 2, 3):
        assert f"`pulumi up --target '**docker:index/container:Container::*rabbitmq-{i}'`" in warning
    assert changed.problems == (), "a warning, not a refusal: the outage may be acceptable"


def test_new_rabbitmq_nodes_beside_replaced_ones_are_warned_to_grow_in_a_second_up() -> None:
    spec = spec_for("dev", tier="large")
    digests = io.node_digests(spec)
    stale = check(spec, engine(*labelled(rabbit(3), "0" * 16)), digests)
    [warning] = [w for w in stale.warnings if "starts as a cluster of its own" in w]
    assert warning.startswith("rabbitmq: this update replaces the running nodes rabbitmq-1, rabbitmq-2, rabbitmq-3 "
                              "and creates rabbitmq-4, rabbitmq-5 at the same time")
    assert "--target '**docker:index/container:Container::*rabbitmq-1'" in warning
    # Growth alone (the running nodes keep their config) or a replacement alone is not this case.
    current = check(spec, engine(*labelled(rabbit(3), digests["rabbitmq-1"])), digests)
    assert not [w for w in current.warnings if "cluster of its own" in w]
    same_count = check(spec_for("dev", tier="medium"), engine(*labelled(rabbit(3), "0" * 16)),
                       io.node_digests(spec_for("dev", tier="medium")))
    assert not [w for w in same_count.warnings if "cluster of its own" in w]


def _live_platform(spec: PlatformSpec) -> list[EngineContainer]:
    """`spec`'s containers as the engine lists them once it is up (the creation step exited)."""
    parts = [(spec.postgres.name, spec.postgres.instance_names), (spec.rabbitmq.name, spec.rabbitmq.instance_names),
             (spec.redis.name, spec.redis.instance_names),
             *((w.name, w.instance_names) for w in spec.workloads)]
    return [ours(i, part) for part, names in parts for i in names]


def test_data_nodes_added_under_running_apps_are_warned_to_replace_every_app_container_at_once() -> None:
    """Their environment lists the data nodes: growing the data tier replaces every gateway and service together."""
    medium = spec_for("dev", tier="medium")
    running = _live_platform(medium)
    apps = [c for c in running if c.labels["banyan.part"] in {w.name for w in medium.workloads}]
    [warning] = [w for w in check(spec_for("dev", tier="large"), engine(*running)).warnings
                 if "their environment lists" in w]
    assert warning.startswith(f"api-gateway and the services: this update changes the data nodes their environment "
                              f"lists (postgres +postgres-replica-3; rabbitmq +rabbitmq-4, +rabbitmq-5; redis "
                              f"+redis-node-4, +redis-node-5, +redis-node-6), so `pulumi up` replaces all {len(apps)} "
                              "of their running containers at once"), warning
    gateways = [f"api-gateway-{i}" for i in range(1, medium.gateway.instances + 1)]
    steps = [f"`pulumi up --target '**docker:index/container:Container::*{g}'`" for g in gateways]
    assert "; then ".join(steps) in warning
    # Nothing moved, nothing running yet, or only the data tier up (a first `up`): no such warning.
    for spec, snapshot in ((medium, engine(*running)),
                           (spec_for("dev", tier="large"), engine()),
                           (spec_for("dev", tier="large"), engine(*[c for c in running if c not in apps]))):
        assert not [w for w in check(spec, snapshot).warnings if "their environment lists" in w]


def test_one_changed_node_or_a_node_without_the_label_is_no_warning() -> None:
    spec = spec_for("dev", tier="medium")
    digests = io.node_digests(spec)
    nodes = labelled(rabbit(3), digests["rabbitmq-1"])
    one = [*labelled(nodes[:1], "0" * 16), *nodes[1:]]
    assert not [w for w in check(spec, engine(*one), digests).warnings if "together" in w]
    # Containers from before the label existed: nothing to compare, nothing claimed.
    assert not [w for w in check(spec, engine(*rabbit(3)), digests).warnings if "together" in w]


def test_redis_nodes_are_compared_node_by_node() -> None:
    spec = spec_for("dev", tier="medium")
    digests = io.node_digests(spec)
    assert digests["redis-node-1"] != digests["redis-node-2"], "each node's redis.conf names its own host"
    nodes = [EngineContainer(c.name, c.state, {**c.labels, CONFIG_LABEL: digests.get(c.labels["banyan.instance"],
                                                                                      "")}, c.host_ports)
             for c in redis(3)]
    assert not [w for w in check(spec, engine(*nodes), digests).warnings if "together" in w]
    stale = [*labelled([n for n in nodes if "node" in n.name], "f" * 16)]
    [warning] = [w for w in check(spec, engine(*stale), digests).warnings if "together" in w]
    assert warning.startswith("redis: this update changes the configuration of 3 running nodes")
