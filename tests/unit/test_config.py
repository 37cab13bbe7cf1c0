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
    ("unknown target", {"target": "swarm"}, "banyan:target", "'docker' or 'kubernetes'"),
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
    ("protect not a flag", {"protect": "maybe"}, "banyan:protect", "valid boolean"),
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
