"""Stack files load; every kind of bad input stops before any resource, naming key, value and what is allowed."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from infra.program import load_spec, main
from model.config import StackConfig, parse_config
from model.errors import ConfigError
from testkit import (
    BanyanMocks,
    apply_sets,
    read_stack_file,
    render_program,
    to_engine_config,
)

TWO_SERVICES = [
    {"name": "a", "image": "app:1.0"},
    {"name": "b", "image": "app:1.0"},
]

# (what-if overrides on the dev stack, the key the message must name, a word of what is allowed)
BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown tier", {"tier": "huge"}, "banyan:tier", "'small', 'medium' or 'large'"),
    ("unknown target", {"target": "nomad"}, "banyan:target", "'docker', 'kubernetes' or 'swarm'"),
    ("unknown top-level key", {"colour": "blue"}, "banyan:colour", "not known"),
    ("negative replicas", {"postgres.replicas": -1}, "banyan:postgres.replicas", "greater than or equal to 0"),
    ("replicas not a number", {"postgres.replicas": "two"}, "banyan:postgres.replicas", "valid integer"),
    ("zero gateways", {"gateway.instances": 0}, "banyan:gateway.instances", "greater than or equal to 1"),
    ("zero service instances", {"services[0].instances": 0}, "banyan:services[0].instances",
     "greater than or equal to 1"),
    ("missing image", {"services": [{"name": "a"}]}, "banyan:services[0].image", "required"),
    ("latest image", {"services[0].image": "redis:latest"}, "banyan:services[0].image", "not 'latest'"),
    ("untagged image", {"postgres.image": "postgres"}, "banyan:postgres.image", "pinned to a tag"),
    ("publish address not an IP", {"nginx.publish_address": "everywhere"}, "banyan:nginx.publish_address",
     "must be an IP address of the Docker host"),
    ("bad service name", {"services[0].name": "User_Service"}, "banyan:services[0].name", "pattern"),
    ("unknown workload kind", {"services[1].workload": "gpu"}, "banyan:services[1].workload",
     "'cpu', 'io' or 'memory'"),
    ("port out of range", {"services[0].port": 70000}, "banyan:services[0].port", "less than or equal to 65535"),
    ("unknown nested key", {"services[0].colour": "x"}, "banyan:services[0].colour", "not known"),
    ("duplicate service names", {"services": [TWO_SERVICES[0], TWO_SERVICES[0]]}, "banyan:services", "used twice"),
    ("no services", {"services": []}, "banyan:services", "at least 1"),
    ("impossible connection budget", {"postgres.max_connections": 50}, "banyan:postgres.max_connections",
     "user-service 3 x 10 + order-service 3 x 10 = 60"),
    ("even RabbitMQ cluster", {"rabbitmq.nodes": 4}, "banyan:rabbitmq.nodes", "odd"),
    ("4-node Redis cluster (large: 1 replica per master)", {"tier": "large", "redis.nodes": 4},
     "banyan:redis.nodes", "give 2 masters"),
    ("4 nodes as masters with replicas", {"redis.nodes": 4, "redis.replicas_per_master": 1},
     "banyan:redis.nodes", "at least 3"),
    ("2-node Redis cluster", {"redis.nodes": 2}, "banyan:redis.nodes", "at least 3"),
    ("replicas that do not divide the nodes", {"tier": "medium", "redis.replicas_per_master": 1},
     "banyan:redis.replicas_per_master", "not whole"),
    ("port not a number", {"gateway.port": "abc"}, "banyan:gateway.port", "valid integer"),
    ("protect not a flag", {"protect": "maybe"}, "banyan:protect", "allowed: true or false"),
    ("pool min above max", {"gateway.pool": {"min": 20, "max": 5}}, "banyan:gateway.pool.min", "at most pool.max"),
    ("request above limit", {"gateway.resources": {"requests": {"cpu_millis": 4000}}},
     "banyan:gateway.resources.requests.cpu_millis", "at most the limit"),
    ("autoscaler min above max",
     {"target": "kubernetes", "gateway.autoscaling": {"min_replicas": 10, "max_replicas": 5}},
     "banyan:gateway.autoscaling.min_replicas", "at most autoscaling.max_replicas"),
    ("two load balancers on one Docker host", {"nginx.instances": 2}, "banyan:nginx.instances", "1 on target docker"),
    ("bad env var name", {"services[0].env": {"1BAD": "x"}}, "banyan:services[0].env.1BAD", "pattern"),
    ("service named like a data-tier host", {"services[0].name": "postgres"}, "banyan:services[0].name",
     "already used by banyan:postgres"),
    ("gateway missing", {"gateway": None}, "banyan:gateway", "valid dictionary"),
    ("bad namespace", {"kubernetes.namespace": "Bad NS"}, "banyan:kubernetes.namespace", "pattern"),
    ("zero Redis nodes", {"redis.nodes": 0}, "banyan:redis.nodes", "greater than or equal to 1"),
    ("RabbitMQ version not major.minor", {"rabbitmq.version": "three"}, "banyan:rabbitmq.version", "pattern"),
    ("env var banyan sets itself", {"services[0].env": {"DATABASE_URL": "postgres://x"}},
     "banyan:services[0].env.DATABASE_URL", "set by banyan"),
    ("unquoted version (YAML reads 3.10 as 3.1)", {"rabbitmq.version": 3.10}, "banyan:rabbitmq.version", "quoted"),
    ("image of another PostgreSQL major", {"postgres.image": "postgres:15.8-alpine"}, "banyan:postgres.image",
     "names PostgreSQL 15 but banyan:postgres.version is 16"),
    ("fractional instance count", {"gateway.instances": 2.5}, "banyan:gateway.instances", "fractional"),
    ("cluster domain not a domain", {"kubernetes.cluster_domain": "Cluster_Local"},
     "banyan:kubernetes.cluster_domain", "must be a DNS domain in lower case, such as cluster.local"),
    ("DNS namespace not a name", {"kubernetes.dns_namespace": "kube system"}, "banyan:kubernetes.dns_namespace",
     "pattern"),
    ("DNS pod label key with a space", {"kubernetes.dns_pod_labels": {"k8s app": "kube-dns"}},
     "banyan:kubernetes.dns_pod_labels", "label key 'k8s app' is not a Kubernetes label key"),
    ("monitoring label value too long", {"monitoring.pod_labels": {"app": "x" * 64}},
     "banyan:monitoring.pod_labels", "is not a Kubernetes label value"),
    ("monitoring namespace not a name", {"monitoring.namespace": "Monitoring"}, "banyan:monitoring.namespace",
     "pattern"),
    ("API server address with host bits", {"kubernetes.api_server_cidrs": ["10.0.0.1/8"]},
     "banyan:kubernetes.api_server_cidrs[0]", "must be an address block such as 10.0.0.1/32"),
    ("liveness path not a path", {"gateway.liveness_path": "live"}, "banyan:gateway.liveness_path", "pattern"),
    ("gateways computed past the instance limit", {"gateway.expected_peak_rps": 1_000_000},
     "banyan:gateway.expected_peak_rps", "x 2 headroom = 2000 instances"),
    ("an instance count and an expected peak", {"gateway.expected_peak_rps": 5000, "gateway.instances": 3},
     "banyan:gateway.instances", "banyan:gateway.expected_peak_rps (5000) decides the gateway count too"),
    ("a flag as an instance count", {"services[0].instances": True}, "banyan:services[0].instances",
     "a flag (true/false) is not a number"),
    ("a CPU limit above the declared Docker host", {"postgres.resources": {"limits": {"cpu_millis": 12_000}}},
     "banyan:postgres.resources.limits.cpu_millis", "Docker refuses a CPU limit above the host's CPU count"),
    ("one host port published twice", {"nginx.port": 15672}, "banyan:rabbitmq.management_host_port",
     "banyan:nginx.port publishes 15672"),
    ("RabbitMQ version the image is not", {"rabbitmq.version": "'3.12'"}, "banyan:rabbitmq.image",
     "but banyan:rabbitmq.version is 3.12"),
]




def raw_for(sets: dict[str, Any], stack: str = "dev") -> tuple[dict[str, str], frozenset[str]]:
    return to_engine_config(apply_sets(read_stack_file(stack), sets))


class CountingMocks(BanyanMocks):
    def __init__(self) -> None:
        self.registered = 0

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.registered += 1
        return super().new_resource(args)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_load_into_a_valid_config(stack: str) -> None:
    raw, secret = raw_for({}, stack)
    config, problems = parse_config(raw)
    assert problems == [] and isinstance(config, StackConfig)
    spec = load_spec(raw, project="banyan", stack=stack, secret_keys=secret)
    assert spec.target == {"dev": "docker", "prod": "kubernetes"}[stack]
    assert spec.tier == {"dev": "small", "prod": "large"}[stack]
    assert spec.protect is (stack == "prod")


def test_at_least_25_distinct_bad_configs() -> None:
    assert len({case[0] for case in BAD}) >= 25
    assert len({case[2] for case in BAD}) >= 25


@pytest.mark.parametrize(("sets", "key", "allowed"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_config_is_rejected_with_key_value_and_allowed(sets: dict[str, Any], key: str, allowed: str) -> None:
    raw, secret = raw_for(sets)
    mocks = CountingMocks()
    with pytest.raises(ConfigError) as caught:
        render_program(main, raw, project="banyan", stack="dev", secret_keys=secret, mocks=mocks)
    message = str(caught.value)
    lines = [line for line in message.splitlines() if line.startswith(f"  - {key}:")]
    assert lines, f"no line names {key}:\n{message}"
    assert any(allowed in line for line in lines), message
    assert any("got " in line or "not set" in line for line in lines)
    # The Python language host prints a RunError as a message, without a traceback.
    assert isinstance(caught.value, pulumi.RunError)
    assert mocks.registered == 0, "a resource was registered before the config was rejected"


def test_the_offending_value_is_shown() -> None:
    raw, secret = raw_for({"tier": "huge", "postgres.replicas": -1})
    with pytest.raises(ConfigError) as caught:
        load_spec(raw, project="banyan", stack="dev", secret_keys=secret)
    message = str(caught.value)
    assert 'banyan:tier: got "huge"' in message
    assert "banyan:postgres.replicas: got -1" in message
    assert "(2 problems)" in message


def test_every_problem_is_reported_at_once() -> None:
    raw, _ = raw_for({"rabbitmq.nodes": 4, "redis.nodes": 2, "postgres.max_connections": 50})
    with pytest.raises(ConfigError) as caught:
        load_spec(raw, project="banyan", stack="dev")
    keys = {p.key for p in caught.value.problems}
    assert keys == {"banyan:rabbitmq.nodes", "banyan:redis.nodes", "banyan:postgres.max_connections"}


def test_malformed_structured_value() -> None:
    raw, _ = raw_for({})
    raw["banyan:postgres"] = "{replicas: [1,"
    with pytest.raises(ConfigError, match=r"banyan:postgres: got .*valid structured"):
        load_spec(raw, project="banyan", stack="dev")


def test_secret_values_are_not_echoed_in_errors() -> None:
    config = apply_sets(read_stack_file("dev"), {})
    config["banyan:gateway"]["env"] = {"API_TOKEN": {"secure": "v1:abc"}, "1BAD": "x"}
    raw, secret = to_engine_config(config)
    assert "banyan:gateway" in secret
    with pytest.raises(ConfigError) as caught:
        load_spec(raw, project="banyan", stack="dev", secret_keys=secret)
    assert "[secret]" in str(caught.value)
    assert "mocksecret" not in str(caught.value)


def test_provider_namespaces_are_left_to_providers() -> None:
    raw, _ = raw_for({})
    raw["docker:host"] = "unix:///var/run/docker.sock"
    assert load_spec(raw, project="banyan", stack="dev").target == "docker"


def test_dns_cluster_domain_and_monitoring_default_to_kubernetes_own_values() -> None:
    raw, secret = raw_for({}, "prod")
    spec = load_spec(raw, project="banyan", stack="prod", secret_keys=secret)
    kube = spec.kubernetes
    assert (kube.cluster_domain, kube.dns_service, kube.dns_namespace) == ("cluster.local", "kube-dns", "kube-system")
    assert kube.dns_pod_labels == (("k8s-app", "kube-dns"),)
    assert kube.dns_host == "kube-dns.kube-system.svc.cluster.local"
    assert kube.api_server_cidrs is None
    assert (spec.monitoring.namespace, spec.monitoring.pod_labels) == (
        "monitoring", (("app.kubernetes.io/name", "prometheus"),))
    assert spec.gateway.liveness_path is None
    assert not [w for w in spec.warnings if "kubernetes" in w or "monitoring" in w]


def test_dns_cluster_domain_and_monitoring_overrides() -> None:
    raw, secret = raw_for({"kubernetes.cluster_domain": "corp.internal", "kubernetes.dns_service": "coredns",
                           "kubernetes.dns_namespace": "dns", "kubernetes.dns_pod_labels": {"b": "2", "a": "1"},
                           "kubernetes.api_server_cidrs": ["10.0.0.1/32", "fd00::1/128"],
                           "monitoring.namespace": "observability", "monitoring.pod_labels": {},
                           "services[0].liveness_path": "/livez"}, "prod")
    spec = load_spec(raw, project="banyan", stack="prod", secret_keys=secret)
    kube = spec.kubernetes
    assert kube.dns_host == "coredns.dns.svc.corp.internal"
    assert kube.service_host("nginx") == "nginx.banyan.svc.corp.internal"
    assert kube.dns_pod_labels == (("a", "1"), ("b", "2")), "sorted: inputs stay deterministic"
    assert kube.api_server_cidrs == ("10.0.0.1/32", "fd00::1/128")
    assert (spec.monitoring.namespace, spec.monitoring.pod_labels) == ("observability", ())
    assert spec.services[0].liveness_path == "/livez"


def test_kubernetes_only_keys_on_docker_are_ignored_with_a_warning() -> None:
    raw, secret = raw_for({"kubernetes.cluster_domain": "corp.internal", "monitoring.namespace": "observability",
                           "gateway.liveness_path": "/livez"})
    spec = load_spec(raw, project="banyan", stack="dev", secret_keys=secret)
    assert "banyan:kubernetes only applies to target kubernetes; ignored" in spec.warnings
    assert "banyan:monitoring.namespace only applies to target kubernetes; ignored" in spec.warnings
    assert any(w.startswith("banyan:gateway.liveness_path only applies to target kubernetes") for w in spec.warnings)
    plain, _ = raw_for({})
    assert not [w for w in load_spec(plain, project="banyan", stack="dev").warnings if "only applies" in w]
