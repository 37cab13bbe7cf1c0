"""The environment contract (model/contract.py, README "Environment contract") as each instance receives it,
on both targets: the dev stack's containers (Docker) and the prod stack's Deployments (Kubernetes).

The names are written out here, not read from model.contract: an application is built against these names,
so renaming one in the code must fail a test, not silently follow. Each kind of workload is covered: the
gateway, a service that is a database client (user-service) and one that is not (order-service, set so).
"""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import SplitResult, urlsplit

import pytest

from model.contract import RESERVED
from model.spec import GatewaySpec, PlatformSpec, ServiceSpec, WorkloadSpec
from testkit import RecordedResource, Rendering, Secret, mock_secret_value, render_stack, unwrap
from testkit.component import stack_spec
from tests.helpers import env_of

EVERY_APP = frozenset({
    "BANYAN_STACK", "SERVICE_NAME", "PORT",
    "RABBITMQ_URL", "RABBITMQ_URLS", "RABBITMQ_DEFAULT_QUEUE_TYPE",
    "REDIS_MODE", "REDIS_NODES", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_URL",
})
DATABASE_CLIENTS = frozenset({
    "DATABASE_URL", "DATABASE_REPLICA_URLS", "DATABASE_POOL_MIN", "DATABASE_POOL_MAX", "DATABASE_POOL_IDLE_TIMEOUT_MS",
})
SERVICES = frozenset({"RABBITMQ_PREFETCH"})
GATEWAY = frozenset({
    "RATE_LIMIT_STORE", "RATE_LIMIT_MAX", "RATE_LIMIT_WINDOW_MS",
    "CIRCUIT_BREAKER_FAILURE_THRESHOLD", "CIRCUIT_BREAKER_SUCCESS_THRESHOLD", "CIRCUIT_BREAKER_RECOVERY_TIMEOUT_MS",
})
# What carries a credential: a Pulumi secret on Docker (the whole env list), a Secret reference on Kubernetes.
CREDENTIALS = frozenset({"DATABASE_URL", "DATABASE_REPLICA_URLS", "RABBITMQ_URL", "RABBITMQ_URLS",
                         "REDIS_PASSWORD", "REDIS_URL"})
STACKS = {"docker": "dev", "kubernetes": "prod"}
TIERS_ = ("small", "large")
# Makes the second service of both stack files a workload without PostgreSQL connections.
NO_DATABASE = {"services[1].database_client": False}
PARTS = ("api-gateway", "user-service", "order-service")


@cache
def rendered(target: str, tier: str) -> tuple[PlatformSpec, Rendering]:
    stack, sets = STACKS[target], {"tier": tier, **NO_DATABASE}
    return stack_spec(stack, set=sets), render_stack(stack, set=sets)


def workload(spec: PlatformSpec, part: str) -> WorkloadSpec:
    found = [w for w in (spec.gateway, *spec.services) if w.name == part]
    assert len(found) == 1, part
    return found[0]


def expected_names(w: WorkloadSpec) -> frozenset[str]:
    kind = GATEWAY if isinstance(w, GatewaySpec) else SERVICES
    return EVERY_APP | kind | (DATABASE_CLIENTS if w.database_client else frozenset())


def docker_envs(r: Rendering, w: WorkloadSpec) -> list[dict[str, str]]:
    """The env of every container of the part, checked to have travelled as a secret."""
    containers = [c for c in r.of_type("docker:index/container:Container")
                  if c.plain_inputs["hostname"] in w.instance_names]
    assert len(containers) == w.instances, w.name
    return [env_of(c, secret=True) for c in containers]


def kubernetes_env(r: Rendering, part: str) -> tuple[dict[str, str], set[str]]:
    """The Deployment's container env with each Secret reference resolved, and the names so referenced."""
    (deployment,) = [d for d in r.of_type("kubernetes:apps/v1:Deployment") if d.inputs["metadata"]["name"] == part]
    (container,) = unwrap(deployment.inputs)["spec"]["template"]["spec"]["containers"]
    secrets: dict[str, RecordedResource] = {s.inputs["metadata"]["name"]: s
                                            for s in r.of_type("kubernetes:core/v1:Secret")}
    env: dict[str, str] = {}
    referenced: set[str] = set()
    for item in container["env"]:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            data = secrets[ref["name"]].inputs["stringData"]
            assert isinstance(data, Secret), f"{ref['name']}: stringData must stay a Pulumi secret"
            env[item["name"]] = unwrap(data)[ref["key"]]
            referenced.add(item["name"])
        else:
            env[item["name"]] = item["value"]
    return env, referenced


def envs_of(target: str, tier: str, part: str) -> list[dict[str, str]]:
    spec, r = rendered(target, tier)
    if target == "docker":
        return docker_envs(r, workload(spec, part))
    env, _ = kubernetes_env(r, part)
    return [env]


def outputs(r: Rendering, type_: str) -> dict[str, Any]:
    (component,) = r.of_type(type_)
    return component.outputs


def url(text: str, scheme: str) -> SplitResult:
    """One URL, strictly: the scheme, a host, a numeric port, nothing after the path."""
    parts = urlsplit(text)
    assert parts.scheme == scheme, text
    assert parts.hostname and parts.port, text
    assert not parts.query and not parts.fragment, text
    return parts


def test_the_contract_here_is_the_reserved_list() -> None:
    assert EVERY_APP | DATABASE_CLIENTS | SERVICES | GATEWAY == RESERVED


@pytest.mark.parametrize("tier", TIERS_)
@pytest.mark.parametrize("target", STACKS)
@pytest.mark.parametrize("part", PARTS)
def test_every_reserved_variable_is_there_for_each_kind_of_workload(target: str, tier: str, part: str) -> None:
    spec, _ = rendered(target, tier)
    w = workload(spec, part)
    assert w.database_client is (part == "user-service")
    for env in envs_of(target, tier, part):
        # The stack files add no env of their own: an instance gets the contract, all of it and only it.
        assert set(env) == expected_names(w)


@pytest.mark.parametrize("tier", TIERS_)
@pytest.mark.parametrize("target", STACKS)
@pytest.mark.parametrize("part", PARTS)
def test_the_values_are_the_spec_s(target: str, tier: str, part: str) -> None:
    spec, _ = rendered(target, tier)
    w = workload(spec, part)
    for env in envs_of(target, tier, part):
        assert (env["BANYAN_STACK"], env["SERVICE_NAME"], env["PORT"]) == (spec.stack, part, str(w.port))
        assert env["RABBITMQ_DEFAULT_QUEUE_TYPE"] == spec.rabbitmq.default_queue_type
        assert env["REDIS_MODE"] == spec.redis.mode
        if w.database_client:
            pool = (env["DATABASE_POOL_MIN"], env["DATABASE_POOL_MAX"], env["DATABASE_POOL_IDLE_TIMEOUT_MS"])
            assert pool == (str(w.pool.min), str(w.pool.max), str(w.pool.idle_timeout_ms))
        if isinstance(w, GatewaySpec):
            rl, cb = spec.gateway.rate_limit, spec.gateway.circuit_breaker
            assert (env["RATE_LIMIT_STORE"], env["RATE_LIMIT_MAX"], env["RATE_LIMIT_WINDOW_MS"]) == (
                rl.store, str(rl.max), str(rl.window_ms))
            assert (env["CIRCUIT_BREAKER_FAILURE_THRESHOLD"], env["CIRCUIT_BREAKER_SUCCESS_THRESHOLD"],
                    env["CIRCUIT_BREAKER_RECOVERY_TIMEOUT_MS"]) == (
                str(cb.failure_threshold), str(cb.success_threshold), str(cb.recovery_timeout_ms))
        else:
            assert isinstance(w, ServiceSpec)
            assert env["RABBITMQ_PREFETCH"] == str(w.prefetch)


@pytest.mark.parametrize("tier", TIERS_)
@pytest.mark.parametrize("part", PARTS)
def test_credentials_reach_kubernetes_pods_only_through_secrets(tier: str, part: str) -> None:
    _, r = rendered("kubernetes", tier)
    env, referenced = kubernetes_env(r, part)
    assert referenced == set(env) & CREDENTIALS


@pytest.mark.parametrize("tier", TIERS_)
@pytest.mark.parametrize("target", STACKS)
def test_list_variables_split_on_commas_into_one_url_per_replica_or_node(target: str, tier: str) -> None:
    spec, r = rendered(target, tier)
    pg = outputs(r, "banyan:index:PostgresCluster")
    mq = outputs(r, "banyan:index:RabbitMQCluster")
    rd = outputs(r, "banyan:index:RedisCluster")
    # Docker: every replica and node is its own container. Kubernetes: reads and AMQP go through one Service
    # each (CloudNativePG's read-only Service, the RabbitMQ operator's client Service); Redis Cluster clients
    # need every node, each a pod of the StatefulSet.
    if target == "docker":
        assert len(pg["replica_hosts"]) == spec.postgres.replicas
        assert len(mq["hosts"]) == spec.rabbitmq.nodes
    else:
        assert len(pg["replica_hosts"]) == (1 if spec.postgres.replicas else 0)
        assert len(mq["hosts"]) == 1
    assert len(rd["hosts"]) == spec.redis.nodes
    readers = pg["replica_hosts"] or [pg["primary_host"]]
    pg_password = mock_secret_value("banyan-secrets-postgres-app")
    generated = {mock_secret_value(s.name) for s in r.of_type("random:index/randomPassword:RandomPassword")}
    # The applications' own ACL user, never the administrator (`default`, whose password the nodes hold).
    redis_password = mock_secret_value("banyan-secrets-redis-app")
    assert redis_password != mock_secret_value("banyan-secrets-redis")

    for part in PARTS:
        w = workload(spec, part)
        for env in envs_of(target, tier, part):
            amqp = [url(u, "amqp") for u in env["RABBITMQ_URLS"].split(",")]
            assert [u.hostname for u in amqp] == mq["hosts"]
            # One login for every node (which user the apps get is the platform's choice, not the contract's).
            ((port, user, password, vhost),) = {(u.port, u.username, u.password, u.path) for u in amqp}
            assert port == mq["port"] and user and vhost.startswith("/")
            assert password in generated, "a generated password, never a default"
            assert env["RABBITMQ_URL"] == env["RABBITMQ_URLS"].split(",")[0]

            nodes = env["REDIS_NODES"].split(",")
            assert nodes == [f"{h}:{rd['port']}" for h in rd["hosts"]]
            assert all(url(f"redis://{n}", "redis").port == rd["port"] for n in nodes)
            first = url(env["REDIS_URL"], "redis")
            assert (first.hostname, first.port, first.username, first.password, first.path) == (
                rd["hosts"][0], rd["port"], "banyan-app", redis_password, "")
            assert env["REDIS_PASSWORD"] == redis_password
            assert env["REDIS_USERNAME"] == "banyan-app"

            if w.database_client:
                primary = url(env["DATABASE_URL"], "postgresql")
                replicas = [url(u, "postgresql") for u in env["DATABASE_REPLICA_URLS"].split(",")]
                assert primary.hostname == pg["primary_host"]
                assert [u.hostname for u in replicas] == readers
                assert {(u.port, u.username, u.password, u.path) for u in [primary, *replicas]} == {
                    (pg["port"], spec.postgres.user, pg_password, f"/{spec.postgres.database}")}


@pytest.mark.parametrize("tier", TIERS_)
def test_docker_hosts_in_the_lists_are_containers_on_the_network(tier: str) -> None:
    _, r = rendered("docker", tier)
    hostnames = {c.plain_inputs["hostname"] for c in r.of_type("docker:index/container:Container")}
    env = envs_of("docker", tier, "user-service")[0]
    listed = [urlsplit(u).hostname for key in ("DATABASE_REPLICA_URLS", "RABBITMQ_URLS")
              for u in env[key].split(",")]
    listed += [n.rpartition(":")[0] for n in env["REDIS_NODES"].split(",")]
    assert listed and set(listed) <= hostnames


@pytest.mark.parametrize("tier", TIERS_)
def test_kubernetes_redis_nodes_are_the_stateful_set_s_pods(tier: str) -> None:
    spec, r = rendered("kubernetes", tier)
    (sts,) = [unwrap(s.inputs) for s in r.of_type("kubernetes:apps/v1:StatefulSet")]
    service = sts["spec"]["serviceName"]
    env = envs_of("kubernetes", tier, "api-gateway")[0]
    expected = [f"{sts['metadata']['name']}-{i}.{service}:{spec.redis.port}" for i in range(sts["spec"]["replicas"])]
    assert env["REDIS_NODES"].split(",") == expected
    assert sts["spec"]["replicas"] == spec.redis.nodes
