"""The policy pack (policy/): every rule passes on the real rendered stacks and fails on a minimal violating
input; the pack itself boots the way the Pulumi CLI boots it and answers the engine's gRPC calls."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import pytest
import yaml

from model.stateful import DOCKER_VOLUME, kubernetes_kind
from policy import rules
from policy.rules import Report, Resource
from testkit import PROJECT_DIR, UNKNOWN, RecordedResource, Rendering, Secret, render_stack, unwrap

POLICY_DIR = PROJECT_DIR / "policy"
STACKS = sorted(p.name.split(".")[1] for p in PROJECT_DIR.glob("Pulumi.*.yaml"))
# The stacks as committed, and the dev stack at every tier (different shapes: replicas, a Redis cluster).
RENDERS = [(s, None) for s in STACKS] + [("dev", "medium"), ("dev", "large")]
RESOURCE_RULES: dict[str, Callable[[Resource], Report]] = {
    "images": rules.check_image_pinned,
    "limits": rules.check_resource_limits,
    "protected": rules.check_protected,
    "public-ports": rules.check_public_ports,
}
CONTAINER = rules.DOCKER_CONTAINER
URN_PROD = "urn:pulumi:prod::banyan::x::name"
URN_DEV = "urn:pulumi:dev::banyan::x::name"


def as_policy_sees(value: Any) -> Any:
    """Recorded inputs as the engine hands them to a policy: secrets unwrapped, unknowns as Pulumi's
    sentinel string."""
    if isinstance(value, Secret):
        return as_policy_sees(value.value)
    if value is UNKNOWN:
        return "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    if isinstance(value, dict):
        return {k: as_policy_sees(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_policy_sees(v) for v in value]
    return value


def resource(rec: RecordedResource) -> Resource:
    return Resource(type=rec.type, props=as_policy_sees(rec.inputs), urn=rec.urn, name=rec.name, protect=rec.protect)


@cache
def rendering(stack: str, tier: str | None = None, preview: bool = False) -> Rendering:
    return render_stack(stack, set={"tier": tier} if tier else None, preview=preview)


def resources(stack: str, tier: str | None = None, preview: bool = False) -> list[Resource]:
    return [resource(r) for r in rendering(stack, tier, preview).resources]


def by_name(stack: str, name: str) -> Resource:
    found = [r for r in resources(stack) if r.name == name]
    assert len(found) == 1, name
    return found[0]


def violations(report: Report) -> list[str]:
    return [f.message for f in report.violations]


def container(**props: Any) -> Resource:
    base: dict[str, Any] = {"name": "app-1", "image": "python:3.12.8-alpine", "memory": 512, "cpus": "1"}
    base.update(props)
    return Resource(CONTAINER, base, URN_DEV, "app-1")


def pod_template(*containers_: dict[str, Any], **pod: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": list(containers_), **pod}}}}


def k8s(kind_token: str, name: str, spec: dict[str, Any], urn: str = URN_DEV) -> Resource:
    kind = kind_token.rsplit(":", 1)[1]
    return Resource(f"kubernetes:{kind_token}", {"apiVersion": "v1", "kind": kind, "metadata": {"name": name},
                                                 **spec}, urn, name)


GOOD_LIMITS = {"limits": {"cpu": "500m", "memory": "256Mi"}}


def k8s_container(name: str = "app", image: str = "python:3.12.8-alpine", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": image, "resources": GOOD_LIMITS, **extra}


# ---- the real stacks pass --------------------------------------------------------------------------------


@pytest.mark.parametrize(("stack", "tier"), RENDERS)
@pytest.mark.parametrize("rule", sorted(RESOURCE_RULES))
def test_every_resource_of_the_rendered_stacks_passes(rule: str, stack: str, tier: str | None) -> None:
    problems = []
    for r in resources(stack, tier):
        report = RESOURCE_RULES[rule](r)
        problems += violations(report) + [f"unknown: {u}" for u in report.unknown]
    assert problems == []


@pytest.mark.parametrize(("stack", "tier"), RENDERS)
def test_the_rendered_stacks_keep_their_connection_budget(stack: str, tier: str | None) -> None:
    report = rules.check_connection_budget(resources(stack, tier))
    assert violations(report) == []
    assert report.unknown == []
    assert report.not_applicable is None  # it found a server and judged it


@pytest.mark.parametrize(("stack", "tier"), RENDERS)
def test_the_budget_read_from_resources_is_the_one_the_stack_planned(stack: str, tier: str | None) -> None:
    """The policy, from resources alone, arrives at the numbers of the stack's own budget (its summary
    output, e.g. `user-service 3 x 10 + order-service 3 x 10 = 60 connections; ... max_connections 100`)."""
    planned = unwrap(rendering(stack, tier).stack_outputs["summary"])["connection_budget"]
    terms = set(re.findall(r"([a-z][-a-z0-9]*) (\d+) x (\d+)", planned.split(" = ")[0]))
    total, max_connections = (int(n) for n in re.findall(r"= (\d+) connections.*max_connections (\d+)", planned)[0])
    budget = rules.read_budget(resources(stack, tier))
    assert {(c.name, str(c.instances), str(c.pool_max)) for c in budget.clients} == terms
    assert budget.total == total
    assert budget.servers and {s.max_connections for s in budget.servers} == {max_connections}


def test_the_rules_look_at_the_stateful_resources_of_prod() -> None:
    """Not vacuous: prod has each kind the protection rule guards, all protected, and they are judged."""
    stateful = [r for r in resources("prod") if rules.is_stateful(r.type)]
    kinds = {kubernetes_kind(r.type) for r in stateful}
    assert {("core", "Namespace"), ("apps", "StatefulSet"), ("postgresql.cnpg.io", "Cluster"),
            ("rabbitmq.com", "RabbitmqCluster")} <= kinds
    unprotected = [Resource(r.type, r.props, r.urn, r.name, protect=False) for r in stateful]
    assert all(violations(rules.check_protected(r)) for r in unprotected)


def test_a_first_preview_of_dev_cannot_see_the_pools_and_says_so() -> None:
    """Before the passwords exist, the env items that hold them are unknown: the services' pools are read, but
    whether a container with unknown items and no pool is a client is not known: no pass, no failure."""
    report = rules.check_connection_budget(resources("dev", preview=True))
    assert violations(report) == []
    assert any("envs" in u for u in report.unknown)


# ---- images ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["nginx:1.27.3-alpine", "registry.example.com:5000/team/app:1.4.2",
                                 "app@sha256:" + "a" * 64, "app:1.0@sha256:" + "b" * 64, "sha256:" + "c" * 64,
                                 "ghcr.io/cloudnative-pg/postgresql:16.9-standard-bookworm"])
def test_pinned_references_pass(ref: str) -> None:
    assert rules.image_problem(ref) is None


@pytest.mark.parametrize(("ref", "why"), [("nginx:latest", "latest"), ("nginx", "no tag"),
                                          ("registry.example.com:5000/team/app", "no tag"),
                                          ("nginx:latest@sha256:" + "a" * 64, "latest"), ("", "no image")])
def test_latest_or_untagged_references_fail(ref: str, why: str) -> None:
    assert why in (rules.image_problem(ref) or "")


@pytest.mark.parametrize("subject", [
    container(image="redis"),
    Resource(rules.DOCKER_REMOTE_IMAGE, {"name": "redis:latest"}),
    k8s("apps/v1:Deployment", "api", pod_template(k8s_container(image="api:latest"))),
    k8s("apps/v1:StatefulSet", "redis", pod_template(k8s_container(), initContainers=[k8s_container(image="busybox")])),
    k8s("batch/v1:Job", "create", pod_template(k8s_container(image="redis"))),
    k8s("batch/v1:CronJob", "nightly", {"spec": {"jobTemplate": pod_template(k8s_container(image="x:latest"))}}),
    k8s("postgresql.cnpg.io/v1:Cluster", "postgres", {"spec": {"imageName": "ghcr.io/cloudnative-pg/postgresql"}}),
    k8s("rabbitmq.com/v1beta1:RabbitmqCluster", "rabbitmq", {"spec": {"image": "rabbitmq:latest"}}),
], ids=lambda r: r.type.rsplit(":", 1)[1])
def test_an_unpinned_image_fails(subject: Resource) -> None:
    assert len(violations(rules.check_image_pinned(subject))) == 1


def test_operator_defaults_pass_and_unknown_images_are_not_judged() -> None:
    assert rules.check_image_pinned(k8s("postgresql.cnpg.io/v1:Cluster", "pg", {"spec": {"instances": 1}})).ok
    report = rules.check_image_pinned(container(image=next(iter(rules.UNKNOWN_VALUES))))
    assert report.ok and report.unknown


# ---- limits ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("props", "missing"), [
    ({"memory": None}, "memory"), ({"cpus": None}, "CPU"), ({"memory": 0}, "memory"), ({"cpus": "0"}, "CPU"),
])
def test_a_docker_container_without_a_limit_fails(props: dict[str, Any], missing: str) -> None:
    found = violations(rules.check_resource_limits(container(**props)))
    assert len(found) == 1 and missing in found[0]


def test_a_cpu_quota_is_a_cpu_limit() -> None:
    assert rules.check_resource_limits(container(cpus=None, cpuQuota=50000)).ok


@pytest.mark.parametrize("subject", [
    k8s("apps/v1:Deployment", "api", pod_template({"name": "api", "image": "api:1", "resources": {}})),
    k8s("apps/v1:Deployment", "api", pod_template({"name": "api", "image": "api:1",
                                                   "resources": {"limits": {"memory": "1Gi"}}})),
    k8s("apps/v1:StatefulSet", "redis", pod_template(k8s_container(), initContainers=[{"name": "i", "image": "x:1"}])),
    k8s("batch/v1:Job", "create", pod_template({"name": "c", "image": "redis:7",
                                                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}})),
    k8s("postgresql.cnpg.io/v1:Cluster", "postgres", {"spec": {"instances": 2}}),
    k8s("postgresql.cnpg.io/v1:Pooler", "pooler", {"spec": {"cluster": {"name": "postgres"}, "instances": 2}}),
    k8s("rabbitmq.com/v1beta1:RabbitmqCluster", "rabbitmq", {"spec": {"resources": {"limits": {"cpu": "2"}}}}),
], ids=lambda r: r.type.rsplit(":", 1)[1])
def test_a_kubernetes_container_without_both_limits_fails(subject: Resource) -> None:
    assert len(violations(rules.check_resource_limits(subject))) == 1


def test_limits_removed_from_a_real_container_fail() -> None:
    real = by_name("dev", "banyan-postgres-primary")
    props = {k: v for k, v in real.props.items() if k != "memory"}
    assert violations(rules.check_resource_limits(Resource(real.type, props, real.urn, real.name)))


# ---- protect -------------------------------------------------------------------------------------------------


STATEFUL_TYPES = [DOCKER_VOLUME, "kubernetes:core/v1:Namespace", "kubernetes:apps/v1:StatefulSet",
                  "kubernetes:core/v1:PersistentVolumeClaim", "kubernetes:postgresql.cnpg.io/v1:Cluster",
                  "kubernetes:rabbitmq.com/v1beta1:RabbitmqCluster"]


@pytest.mark.parametrize("type_", STATEFUL_TYPES)
def test_an_unprotected_stateful_resource_fails_in_prod_only(type_: str) -> None:
    subject = Resource(type_, {}, "urn:pulumi:prod::banyan::parent$" + type_ + "::data", "data", protect=False)
    assert len(violations(rules.check_protected(subject))) == 1
    assert rules.check_protected(Resource(type_, {}, subject.urn, "data", protect=True)).ok
    assert rules.check_protected(Resource(type_, {}, subject.urn.replace(":prod:", ":dev:"), "data")).ok


def test_stateless_resources_and_other_stacks_are_not_judged() -> None:
    assert rules.check_protected(Resource("kubernetes:apps/v1:Deployment", {}, URN_PROD, "api")).ok
    assert rules.check_protected(Resource(DOCKER_VOLUME, {}, "urn:pulumi:staging::banyan::x::v", "v"),
                                 protected_stacks=("prod",)).ok
    assert not rules.check_protected(Resource(DOCKER_VOLUME, {}, "urn:pulumi:staging::banyan::x::v", "v"),
                                     protected_stacks=("prod", "staging")).ok


def test_the_stack_is_read_from_the_urn() -> None:
    urn = "urn:pulumi:prod::banyan::banyan:index:BanyanPlatform$docker:index/volume:Volume::v"
    assert rules.stack_of(urn) == "prod"
    assert rules.stack_of("not-a-urn") is None


# ---- public ports ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [{"internal": 5432, "external": 5432},
                                  {"internal": 5432, "external": 5432, "ip": "0.0.0.0"},
                                  {"internal": 5432, "external": 5432, "ip": "10.0.0.5"},
                                  {"internal": 5432, "external": 5432, "ip": "::"}])
def test_a_port_published_beyond_loopback_fails(port: dict[str, Any]) -> None:
    assert len(violations(rules.check_public_ports(container(ports=[port])))) == 1


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.0.0.2", "::1", "[::1]"])
def test_a_loopback_port_passes(ip: str) -> None:
    assert rules.check_public_ports(container(ports=[{"internal": 1, "external": 1, "ip": ip}])).ok


def test_only_the_load_balancer_publishes() -> None:
    public = [{"internal": 80, "external": 8080, "ip": "0.0.0.0"}]
    assert rules.check_public_ports(container(name="nginx", ports=public)).ok
    labelled = container(name="edge", ports=public, labels=[{"label": "banyan.part", "value": "nginx"}])
    assert rules.check_public_ports(labelled).ok
    assert not rules.check_public_ports(container(name="edge", ports=public)).ok
    assert not rules.check_public_ports(container(networkMode="host")).ok
    assert not rules.check_public_ports(container(publishAllPorts=True)).ok


def test_a_real_loopback_port_opened_to_all_fails() -> None:
    """rabbitmq-1 publishes its management UI on loopback; the same container on 0.0.0.0 fails."""
    real = by_name("dev", "banyan-rabbitmq-1")
    props = copy.deepcopy(dict(real.props))
    assert props["ports"] and all(p["ip"] == "127.0.0.1" for p in props["ports"])
    for p in props["ports"]:
        p["ip"] = "0.0.0.0"
    assert violations(rules.check_public_ports(Resource(real.type, props, real.urn, real.name)))


@pytest.mark.parametrize("service_type", ["LoadBalancer", "NodePort"])
def test_a_kubernetes_service_open_to_the_outside_fails_unless_it_is_nginx(service_type: str) -> None:
    spec = {"spec": {"type": service_type, "ports": [{"port": 80}]}}
    assert len(violations(rules.check_public_ports(k8s("core/v1:Service", "api-gateway", spec)))) == 1
    assert rules.check_public_ports(k8s("core/v1:Service", "nginx", spec)).ok
    assert rules.check_public_ports(k8s("core/v1:Service", "api-gateway", {"spec": {"type": "ClusterIP"}})).ok


def test_host_ports_host_network_and_external_ips_fail() -> None:
    host_port = k8s_container(ports=[{"containerPort": 6379, "hostPort": 6379}])
    assert not rules.check_public_ports(k8s("apps/v1:StatefulSet", "redis", pod_template(host_port))).ok
    host_net = pod_template(k8s_container(), hostNetwork=True)
    assert not rules.check_public_ports(k8s("apps/v1:Deployment", "api", host_net)).ok
    external = {"spec": {"type": "ClusterIP", "externalIPs": ["203.0.113.7"]}}
    assert not rules.check_public_ports(k8s("core/v1:Service", "api", external)).ok


# ---- the connection budget -------------------------------------------------------------------------------


def postgres(max_connections: int | None = None, command: list[str] | None = None) -> Resource:
    conf = f"listen_addresses = '*'\nmax_connections = {max_connections}  # budget\n" if max_connections else ""
    props: dict[str, Any] = {"name": "postgres-primary", "image": "postgres:16.9-alpine",
                             "uploads": [{"file": "/etc/postgresql/postgresql.conf", "content": conf}]}
    if command:
        props["command"] = command
    return Resource(CONTAINER, props, URN_DEV, "postgres-primary")


def app(name: str, pool_max: int | str) -> Resource:
    return container(name=name, envs=["PORT=3000", f"DATABASE_POOL_MAX={pool_max}"])


def test_docker_clients_over_80_percent_of_max_connections_fail_with_the_arithmetic() -> None:
    clients = [app(f"user-service-{i}", 10) for i in range(1, 6)]  # 50 connections
    fits = rules.check_connection_budget([postgres(63), *clients])  # 80% of 63 = 50.4
    assert fits.ok
    report = rules.check_connection_budget([postgres(62), *clients])  # 80% of 62 = 49.6
    [message] = violations(report)
    assert "user-service 5 x 10 = 50 connections" in message and "49.6" in message


def test_a_command_line_setting_wins_over_the_config_file() -> None:
    clients = [app("a-1", 40)]
    assert not rules.check_connection_budget([postgres(100, ["postgres", "-c", "max_connections=40"]), *clients]).ok
    assert rules.check_connection_budget([postgres(10, ["postgres", "-c", "max_connections=100"]), *clients]).ok


def test_an_unset_max_connections_is_postgres_default_100() -> None:
    assert not rules.check_connection_budget([postgres(None), app("a-1", 80)]).ok
    assert rules.check_connection_budget([postgres(None), app("a-1", 79)]).ok


def test_the_real_dev_budget_fails_once_its_server_is_made_smaller() -> None:
    """The rule reads the real postgresql.conf upload: shrink max_connections there and the dev stack fails."""
    stack = resources("dev")
    server = next(r for r in stack if r.name == "banyan-postgres-primary")
    props = copy.deepcopy(dict(server.props))
    conf = next(u for u in props["uploads"] if u["file"].endswith("/postgresql.conf"))
    assert re.search(r"^max_connections = \d+", conf["content"], re.MULTILINE)
    conf["content"] = re.sub(r"^max_connections = \d+", "max_connections = 20", conf["content"], flags=re.MULTILINE)
    smaller = [Resource(r.type, props, r.urn, r.name) if r is server else r for r in stack]
    [message] = violations(rules.check_connection_budget(smaller))
    assert "max_connections 20" in message


def hpa(target: str, max_replicas: int) -> Resource:
    spec = {"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                     "minReplicas": 1, "maxReplicas": max_replicas}}
    return k8s("autoscaling/v2:HorizontalPodAutoscaler", target, spec)


def deployment(name: str, pool_max: Any, replicas: int | None = None) -> Resource:
    env = [{"name": "DATABASE_POOL_MAX", **({"value": pool_max} if not isinstance(pool_max, dict) else pool_max)}]
    spec = pod_template(k8s_container(name, env=env))
    if replicas is not None:
        spec["spec"]["replicas"] = replicas
    return k8s("apps/v1:Deployment", name, spec)


def cnpg(max_connections: str | None) -> Resource:
    params = {"max_connections": max_connections} if max_connections else {}
    return k8s("postgresql.cnpg.io/v1:Cluster", "postgres", {"spec": {"postgresql": {"parameters": params}}})


def test_kubernetes_clients_count_at_the_autoscaler_maximum() -> None:
    assert rules.check_connection_budget([cnpg("100"), deployment("svc", "10", replicas=3)]).ok
    [message] = violations(rules.check_connection_budget([cnpg("100"), deployment("svc", "10", replicas=3),
                                                          hpa("svc", 8)]))
    assert "svc 8 x 10 = 80 connections" in message
    assert rules.check_connection_budget([cnpg("101"), deployment("svc", "10"), hpa("svc", 8)]).ok


def test_poolers_count_their_server_connections() -> None:
    pooler = k8s("postgresql.cnpg.io/v1:Pooler", "postgres-pooler", {"spec": {
        "cluster": {"name": "postgres"}, "instances": 2,
        "pgbouncer": {"parameters": {"default_pool_size": "40", "reserve_pool_size": "5"}}}})
    [message] = violations(rules.check_connection_budget([cnpg("100"), pooler]))  # 2 x 45 = 90 >= 80
    assert "90 server connections" in message
    capped = copy.deepcopy(dict(pooler.props))
    capped["spec"]["pgbouncer"]["parameters"]["max_db_connections"] = "39"  # 2 x 39 = 78
    assert rules.check_connection_budget([cnpg("100"), Resource(pooler.type, capped, "", "p")]).ok


def test_what_cannot_be_read_is_reported_not_guessed() -> None:
    secret_ref = {"valueFrom": {"secretKeyRef": {"name": "pool", "key": "max"}}}
    report = rules.check_connection_budget([cnpg("100"), deployment("svc", secret_ref)])
    assert report.ok and report.unknown
    no_server = rules.check_connection_budget([app("a-1", 10)])
    assert no_server.ok and no_server.not_applicable


def test_the_unknown_sentinels_are_pulumis() -> None:
    proxy = pytest.importorskip("pulumi_policy.proxy")
    from pulumi.runtime import rpc

    sdk = {getattr(proxy, n) for n in dir(proxy) if n.startswith("UNKNOWN_") and n.endswith("_VALUE")}
    assert sdk == rules.UNKNOWN_VALUES
    assert rpc.UNKNOWN in rules.UNKNOWN_VALUES


# ---- the pack as the CLI runs it ---------------------------------------------------------------------------


def test_the_pack_files_fit_together() -> None:
    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert set(project) <= {"runtime", "version", "main", "description", "author", "website", "license"}
    pins = dict(line.split("==") for line in (POLICY_DIR / "requirements.txt").read_text().split()
                if "==" in line)
    dev_pins = dict(line.split("==") for line in (PROJECT_DIR / "requirements-dev.txt").read_text().split()
                    if "==" in line)
    runtime_pins = dict(line.split("==") for line in (PROJECT_DIR / "requirements.txt").read_text().split()
                        if "==" in line)
    assert pins["pulumi-policy"] == dev_pins["pulumi-policy"]
    assert pins["pulumi"] == runtime_pins["pulumi"]


@pytest.fixture(scope="module")
def analyzer() -> Iterator[Any]:
    """The pack started as `pulumi-analyzer-policy-python` starts it: `python -m pulumi.policy <engine> .`
    in the pack's folder; it prints the port of its gRPC Analyzer service."""
    pytest.importorskip("pulumi_policy")
    import grpc  # type: ignore[import-untyped]  # no stubs pinned for grpcio
    from pulumi.runtime.proto import analyzer_pb2_grpc

    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    proc = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."], cwd=POLICY_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            proc.kill()
            pytest.fail(f"the policy pack did not start: {line!r} {proc.communicate(timeout=10)[1]}")
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)


SECRET_SIG = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}


def wire(value: Any) -> Any:
    """Recorded inputs as the engine marshals them: secrets under Pulumi's secret signature."""
    if isinstance(value, Secret):
        return {**SECRET_SIG, "value": wire(value.value)}
    if value is UNKNOWN:
        return "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    if isinstance(value, dict):
        return {k: wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [wire(v) for v in value]
    return value


def struct(props: Any) -> Any:
    from google.protobuf import json_format, struct_pb2

    return json_format.ParseDict(props, struct_pb2.Struct())


def analyze(stub: Any, type_: str, props: Any, urn: str = URN_DEV, protect: bool = False) -> list[tuple[str, str]]:
    from pulumi.runtime.proto import analyzer_pb2

    request = analyzer_pb2.AnalyzeRequest(type=type_, properties=struct(props), urn=urn, name=urn.rsplit("::", 1)[1],
                                          options=analyzer_pb2.AnalyzerResourceOptions(protect=protect))
    return [(d.policyName, d.message) for d in stub.Analyze(request).diagnostics]


def analyze_stack(stub: Any, recorded: list[RecordedResource]) -> list[tuple[str, str]]:
    from pulumi.runtime.proto import analyzer_pb2

    request = analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(type=r.type, properties=struct(wire(r.inputs)), urn=r.urn, name=r.name,
                                      options=analyzer_pb2.AnalyzerResourceOptions(protect=r.protect))
        for r in recorded])
    return [(d.policyName, d.message) for d in stub.AnalyzeStack(request).diagnostics]


def test_the_running_pack_lists_its_policies_as_mandatory(analyzer: Any) -> None:
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import analyzer_pb2

    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "banyan"
    names = {p.name: p.enforcementLevel for p in info.policies}
    assert set(names) == {"banyan-pinned-images", "banyan-resource-limits", "banyan-protect-stateful",
                          "banyan-no-public-ports", "banyan-connection-budget", "banyan-image-digests",
                          "banyan-swarm-rollout"}
    assert set(names.values()) == {analyzer_pb2.EnforcementLevel.MANDATORY}


@pytest.mark.parametrize("stack", STACKS)
def test_the_running_pack_passes_every_real_resource_and_the_stack(analyzer: Any, stack: str) -> None:
    recorded = rendering(stack).resources
    found = [d for r in recorded for d in analyze(analyzer, r.type, wire(r.inputs), r.urn, r.protect)]
    assert found == []
    assert analyze_stack(analyzer, recorded) == []


def test_the_running_pack_reports_violations(analyzer: Any) -> None:
    bad = {"name": "api-1", "image": "api:latest", "ports": [{"internal": 3000, "external": 3000}]}
    found = dict(analyze(analyzer, CONTAINER, bad))
    assert set(found) == {"banyan-pinned-images", "banyan-resource-limits", "banyan-no-public-ports"}
    assert "latest" in found["banyan-pinned-images"]
    volume = analyze(analyzer, DOCKER_VOLUME, {"name": "data"}, "urn:pulumi:prod::banyan::v::data")
    assert [p for p, _ in volume] == ["banyan-protect-stateful"]


def test_the_running_pack_fails_a_stack_over_its_budget(analyzer: Any) -> None:
    recorded = copy.deepcopy(rendering("dev").resources)
    server = next(r for r in recorded if r.name == "banyan-postgres-primary")
    for upload in server.inputs["uploads"]:
        if upload["file"].endswith("/postgresql.conf"):
            upload["content"] = re.sub(r"^max_connections = \d+", "max_connections = 20", upload["content"],
                                       flags=re.MULTILINE)
    [(policy, message)] = analyze_stack(analyzer, recorded)
    assert policy == "banyan-connection-budget" and "max_connections 20" in message


def test_the_running_pack_cannot_judge_unknown_values_during_a_preview(analyzer: Any) -> None:
    """The SDK's own answer to an unknown value: an advisory "can't run during preview", not a pass."""
    from pulumi.runtime.proto import analyzer_pb2

    recorded = rendering("dev", preview=True).resources
    request = analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(type=r.type, properties=struct(wire(r.inputs)), urn=r.urn, name=r.name)
        for r in recorded])
    [diag] = analyzer.AnalyzeStack(request).diagnostics
    assert diag.policyName == "banyan-connection-budget"
    assert diag.enforcementLevel == analyzer_pb2.EnforcementLevel.ADVISORY
    assert "during preview" in diag.message and "envs" in diag.message


def test_plain_keeps_unknowns_as_sentinels() -> None:
    proxy = pytest.importorskip("pulumi_policy.proxy")
    from policy.__main__ import plain

    props = proxy.unknown_checking_proxy({"a": {"b": [1, proxy.UNKNOWN_STRING_VALUE]}, "c": proxy.UNKNOWN_ARRAY_VALUE})
    assert plain(props) == {"a": {"b": [1, proxy.UNKNOWN_STRING_VALUE]}, "c": proxy.UNKNOWN_ARRAY_VALUE}
