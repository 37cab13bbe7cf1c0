"""Input handling (issue 15): computed values inside the same limits as given ones, the Docker host's size,
collisions of names and ports on each target, strict types, version against image tag, messages in the user's
case without follow-on errors, namespace hints, settings that do not apply to the target, conflicting settings."""

from __future__ import annotations

import math
from typing import Any

import pytest

from infra.program import load_spec
from model import capacity
from model.config import RabbitMQConfig, RedisConfig, StackConfig, parse_config
from model.errors import ConfigError
from model.spec import PlatformSpec
from testkit import apply_sets, read_stack_file, to_engine_config


def _raw(sets: dict[str, Any], stack: str = "dev", drop: tuple[str, ...] = (),
         extra: dict[str, Any] | None = None) -> tuple[dict[str, str], frozenset[str]]:
    config = apply_sets(read_stack_file(stack), sets)
    for key in drop:
        config.pop(key)
    config.update(extra or {})
    return to_engine_config(config)


def spec(sets: dict[str, Any] | None = None, stack: str = "dev", **kw: Any) -> PlatformSpec:
    raw, secret = _raw(sets or {}, stack, **kw)
    return load_spec(raw, project="banyan", stack=stack, secret_keys=secret)


def problems(sets: dict[str, Any] | None = None, stack: str = "dev", **kw: Any) -> list[str]:
    """The problem lines of the error the config stops with (without the leading '  - ')."""
    raw, secret = _raw(sets or {}, stack, **kw)
    with pytest.raises(ConfigError) as caught:
        load_spec(raw, project="banyan", stack=stack, secret_keys=secret)
    return [line[4:] for line in str(caught.value).splitlines()[1:]]


def one_problem(sets: dict[str, Any] | None = None, stack: str = "dev", **kw: Any) -> str:
    found = problems(sets, stack, **kw)
    assert len(found) == 1, found
    return found[0]


# ---- computed values against the limits of the given ones -----------------------------------------------

def test_gateways_computed_from_the_peak_stay_within_the_instance_limit() -> None:
    line = one_problem({"gateway.expected_peak_rps": 1_000_000})
    assert line.startswith("banyan:gateway.expected_peak_rps: got 1000000;")
    # the arithmetic, and the most the limit allows at this capacity and headroom
    assert "1000000 req/s / 1000 req/s per instance = 1000, x 2 headroom = 2000 instances" in line
    assert "at most 500" in line and "at most 250000" in line


def test_the_largest_peak_the_message_offers_is_accepted_and_one_more_is_not() -> None:
    assert spec({"gateway.expected_peak_rps": 250_000}).gateway.instances == 500
    assert "at most 250000" in one_problem({"gateway.expected_peak_rps": 250_001})
    # with an uneven headroom the offer still holds exactly
    sets = {"gateway.headroom": 1.5, "gateway.capacity_rps": 700}
    best = capacity.max_peak_for(500, 700, 1.5)
    assert capacity.instances_for_load(best, 700, 1.5) <= 500 < capacity.instances_for_load(best + 1, 700, 1.5)
    assert spec({**sets, "gateway.expected_peak_rps": best}).gateway.instances <= 500
    assert f"at most {best}" in one_problem({**sets, "gateway.expected_peak_rps": best + 1})


def test_derived_max_connections_stays_within_its_limit_with_the_arithmetic() -> None:
    sets = {"services[0].autoscaling.max_replicas": 500, "services[0].pool.max": 1000}
    line = one_problem(sets, "prod")
    assert line.startswith("banyan:postgres.max_connections: got 625510;"), line
    assert "user-service 500 x 1000 + order-service 40 x 10 = 500400 connections" in line
    assert "at most 10000" in line and "8000" in line
    assert "e+" not in line


def test_a_given_max_connections_too_low_never_asks_for_more_than_its_limit() -> None:
    sets = {"services[0].autoscaling.max_replicas": 500, "services[0].pool.max": 1000,
            "postgres.max_connections": 100}
    line = one_problem(sets, "prod")
    assert "625501" not in line and "at most 10000" in line


def test_budget_arithmetic_never_prints_an_exponent() -> None:
    from model.spec import BudgetLine, ConnectionBudget

    budget = ConnectionBudget(lines=(BudgetLine(client="a", max_instances=500, pool_max=1000),),
                              max_connections=1_250_010, limit_percent=80)
    assert budget.arithmetic() == "a 500 x 1000 = 500000 connections; 80% of max_connections 1250010 = 1000008"
    odd = ConnectionBudget(lines=(), max_connections=57, limit_percent=80)
    assert odd.arithmetic().endswith("= 45.6")


# ---- the Docker host's size -------------------------------------------------------------------------------

def test_the_dev_stack_fits_the_default_host_without_a_warning() -> None:
    assert not [w for w in spec().warnings if "banyan:docker." in w]


def test_reservations_above_the_declared_host_are_warned_about_with_the_arithmetic() -> None:
    warnings = spec({"gateway.expected_peak_rps": 100_000}).warnings
    cpu = [w for w in warnings if w.startswith("banyan:docker.host_cpu_millis")]
    assert cpu, warnings
    assert "api-gateway 200 x 500" in cpu[0] and "8000" in cpu[0]
    memory = [w for w in warnings if w.startswith("banyan:docker.host_memory_mib")]
    assert memory and "api-gateway 200 x 1024" in memory[0]
    # a larger declared host takes the warnings away
    roomy = spec({"gateway.expected_peak_rps": 100_000,
                  "docker": {"host_cpu_millis": 128_000, "host_memory_mib": 262_144}}).warnings
    assert not [w for w in roomy if "banyan:docker." in w]


def test_a_cpu_limit_above_the_host_is_refused_as_docker_refuses_it() -> None:
    line = one_problem({"postgres.resources": {"limits": {"cpu_millis": 16_000}}})
    assert line.startswith("banyan:postgres.resources.limits.cpu_millis: got 16000;")
    assert "banyan:docker.host_cpu_millis" in line and "8000" in line


def test_the_host_size_is_a_docker_setting() -> None:
    warnings = spec({"docker": {"host_cpu_millis": 4000}}, "prod").warnings
    assert any(w.startswith("banyan:docker only applies to target docker") for w in warnings)


# ---- collisions: names and ports on each target -------------------------------------------------------------

@pytest.mark.parametrize(("name", "owner"), [
    ("postgres-rw", "CloudNativePG"), ("postgres-ro", "CloudNativePG"), ("postgres-pooler", "CloudNativePG"),
    ("rabbitmq-nodes", "RabbitMQ Cluster Operator"), ("api-gateway-pods", "banyan:gateway"),
])
def test_kubernetes_names_that_collide_are_refused(name: str, owner: str) -> None:
    line = one_problem({"services[0].name": name}, "prod")
    assert line.startswith(f'banyan:services[0].name: got "{name}";'), line
    assert owner in line and "the Kubernetes " in line


def test_kubernetes_names_are_checked_on_kubernetes_only() -> None:
    assert spec({"services[0].name": "postgres-rw"}).services[0].name == "postgres-rw"


@pytest.mark.parametrize("namespace", ["kube-system", "cnpg-system", "rabbitmq-system", "monitoring"])
def test_the_stack_namespace_is_nobody_elses(namespace: str) -> None:
    line = one_problem({"kubernetes.namespace": namespace}, "prod")
    assert line.startswith(f'banyan:kubernetes.namespace: got "{namespace}";'), line


def test_a_redis_cluster_creation_step_claims_its_host_name() -> None:
    line = one_problem({"tier": "medium", "services[0].name": "redis-cluster-create"})
    assert "redis-cluster-create" in line


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0"])
def test_host_ports_published_twice_are_refused(address: str) -> None:
    line = one_problem({"nginx.port": 15672, "nginx.publish_address": address})
    assert line.startswith("banyan:rabbitmq.management_host_port: got 15672;") and "banyan:nginx.port" in line


def test_one_port_on_two_addresses_is_no_clash() -> None:
    assert spec({"nginx.port": 15672, "nginx.publish_address": "192.0.2.10"}).nginx.public_port == 15672


# ---- strict types -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("sets", "key"), [
    ({"services[0].instances": True}, "banyan:services[0].instances"),
    ({"gateway.headroom": True}, "banyan:gateway.headroom"),
    ({"postgres.replicas": False}, "banyan:postgres.replicas"),
    ({"rabbitmq.persistence": 1}, "banyan:rabbitmq.persistence"),
    ({"protect": "'yes'"}, "banyan:protect"),  # YAML 1.1 reads a bare yes as true
])
def test_a_wrong_type_is_refused(sets: dict[str, Any], key: str) -> None:
    line = one_problem(sets)
    assert line.startswith(f"{key}: got "), line


def test_a_flag_given_as_a_count_says_what_is_allowed() -> None:
    line = one_problem({"services[0].instances": True})
    assert "a flag" in line and "1-500" in line


@pytest.mark.parametrize(("sets", "check"), [
    ({"services[0].instances": "4"}, lambda s: s.services[0].instances == 4),
    ({"gateway.headroom": "1.5"}, lambda s: s.gateway.autoscaling.enabled is False),
    ({"protect": "true"}, lambda s: s.protect is True),
    ({"protect": "False"}, lambda s: s.protect is False),
    ({"rabbitmq.persistence": "false"}, lambda s: s.rabbitmq.persistence is False),
])
def test_the_strings_pulumi_config_set_stores_are_accepted(sets: dict[str, Any], check: Any) -> None:
    # --set reads values as YAML; quoted, they stay strings, as `pulumi config set --type string` stores them
    quoted = {k: repr(v) if isinstance(v, str) else v for k, v in sets.items()}
    assert check(spec(quoted))


# ---- version against image tag, for every part with a version ----------------------------------------------

MQ, RD = RabbitMQConfig(), RedisConfig()  # the pinned defaults, whatever they are today


@pytest.mark.parametrize(("sets", "key", "text"), [
    ({"rabbitmq.version": "'3.12'"}, "banyan:rabbitmq.image",
     f"names RabbitMQ {MQ.version} but banyan:rabbitmq.version is 3.12"),
    ({"redis.version": "'6.2'"}, "banyan:redis.image", f"names Redis {RD.version} but banyan:redis.version is 6.2"),
    ({"redis.image": "redis:9-alpine"}, "banyan:redis.image",
     f"names Redis 9 but banyan:redis.version is {RD.version}"),
    ({"rabbitmq.image": "registry.example.com/mirror/rabbitmq:3.13.7-management"}, "banyan:rabbitmq.image",
     f"names RabbitMQ 3.13 but banyan:rabbitmq.version is {MQ.version}"),
    ({"postgres.image": "postgres:13.8-alpine"}, "banyan:postgres.image", "names PostgreSQL 13"),
])
def test_version_and_image_tag_agree(sets: dict[str, Any], key: str, text: str) -> None:
    line = one_problem(sets)
    assert line.startswith(f"{key}: got ") and text in line, line


def test_matching_versions_and_tags_without_a_version_pass() -> None:
    ok = spec({"rabbitmq.version": "'3.10'", "rabbitmq.image": "rabbitmq:3.10.8-management-alpine",
               "redis.image": "registry.example.com/cache:2024.01"})
    assert ok.rabbitmq.version == "3.10"


# ---- messages: the user's case, no follow-on errors ------------------------------------------------------------

def test_messages_keep_the_users_case() -> None:
    line = one_problem({"services[0].env": {"1BAD": "x"}})
    assert "string should match pattern '^[A-Za-z_][A-Za-z0-9_]*$'" in line, line


def test_an_error_in_every_service_adds_no_follow_on_error() -> None:
    config = apply_sets(read_stack_file("dev"), {})
    for svc in config["banyan:services"]:
        svc["port"] = 0
    raw, secret = to_engine_config(config)
    with pytest.raises(ConfigError) as caught:
        load_spec(raw, project="banyan", stack="dev", secret_keys=secret)
    lines = str(caught.value).splitlines()[1:]
    assert [line.split(":", 2)[1] for line in lines] == ["services[0].port", "services[1].port"], lines
    assert "tuple" not in str(caught.value)


# ---- namespaces and key names -------------------------------------------------------------------------------

@pytest.mark.parametrize("written", ["banyna:tier", "Banyan:tier", "banyan-core:tier", "tier"])
def test_a_key_under_a_near_miss_namespace_or_none_gets_a_hint(written: str) -> None:
    line = one_problem(drop=("banyan:tier",), extra={written: "small"})
    assert line.startswith(f'{written}: got "small";') and "did you mean banyan:tier?" in line, line


def test_an_optional_key_under_a_near_miss_namespace_is_not_silently_ignored() -> None:
    line = one_problem(extra={"banyna:protect": True})
    assert "did you mean banyan:protect?" in line


def test_other_namespaces_belong_to_providers() -> None:
    assert spec(extra={"docker:host": "unix:///var/run/docker.sock", "aws:region": "eu-west-1"})


def test_a_misspelt_key_gets_the_near_name_and_no_follow_on() -> None:
    line = one_problem(drop=("banyan:tier",), extra={"banyan:teir": "small"})
    assert line.startswith('banyan:teir: got "small";') and "did you mean banyan:tier?" in line, line
    nested = one_problem({"postgres.replcas": 2})
    assert nested.startswith("banyan:postgres.replcas: got 2;") and "did you mean banyan:postgres.replicas?" in nested


# ---- settings that do not apply to the target -----------------------------------------------------------------

@pytest.mark.parametrize(("sets", "stack", "key"), [
    ({"postgres.storage_gib": 20}, "dev", "banyan:postgres.storage_gib"),
    ({"rabbitmq.storage_gib": 20}, "dev", "banyan:rabbitmq.storage_gib"),
    ({"redis.storage_gib": 20}, "dev", "banyan:redis.storage_gib"),
    ({"nginx.service_type": "NodePort"}, "dev", "banyan:nginx.service_type"),
    ({"services[0].autoscaling.max_replicas": 30}, "dev", "banyan:services[0].autoscaling"),
    ({"gateway.liveness_path": "/live"}, "dev", "banyan:gateway.liveness_path"),
    ({"kubernetes.namespace": "x"}, "dev", "banyan:kubernetes"),
    ({"monitoring.namespace": "x"}, "dev", "banyan:monitoring.namespace"),
    ({"rabbitmq.management_host_port": 15672}, "prod", "banyan:rabbitmq.management_host_port"),
    ({"nginx.publish_address": "0.0.0.0"}, "prod", "banyan:nginx.publish_address"),
    ({"docker": {"host_memory_mib": 4096}}, "prod", "banyan:docker"),
])
def test_a_setting_that_does_not_apply_to_the_target_is_warned_about(sets: dict[str, Any], stack: str,
                                                                     key: str) -> None:
    warnings = spec(sets, stack).warnings
    assert any(w.startswith(f"{key} only applies to target") for w in warnings), warnings


def _target_only_fields(model: type[Any] = StackConfig, prefix: str = "") -> set[str]:
    """Fields whose reference entry says they belong to one target."""
    from tooling.docs import _model_of

    found: set[str] = set()
    for name, info in model.model_fields.items():
        doc = info.description or ""
        sub = _model_of(info.annotation)
        sub_doc = (sub.__doc__ or "") if sub is not None else ""
        if (doc.startswith(("Docker only", "Kubernetes")) or "(Kubernetes)" in doc
                or sub_doc.startswith(("Kubernetes", "Docker")) or "Kubernetes only" in sub_doc):
            found.add(f"{prefix}{name}")
        elif sub is not None:
            found |= _target_only_fields(sub, f"{prefix}{name}.")
    return found


def test_every_target_only_field_is_in_the_warning_table() -> None:
    from model.checks import TARGET_ONLY

    documented = {k.replace("services.", "services[].") for k in _target_only_fields()}
    assert documented <= set(TARGET_ONLY), documented - set(TARGET_ONLY)


# ---- conflicting settings -------------------------------------------------------------------------------------

def test_an_instance_count_and_an_expected_peak_conflict() -> None:
    line = one_problem({"gateway.expected_peak_rps": 5000, "gateway.instances": 12})
    assert line.startswith("banyan:gateway.instances: got 12;")
    assert "banyan:gateway.expected_peak_rps" in line and "10 instances" in line


def test_an_instance_count_and_an_autoscaler_minimum_conflict_on_kubernetes() -> None:
    line = one_problem({"gateway.autoscaling.min_replicas": 4, "gateway.instances": 12}, "prod")
    assert line.startswith("banyan:gateway.autoscaling.min_replicas: got 4;") and "banyan:gateway.instances" in line
    # the same number twice decides nothing twice
    assert spec({"gateway.autoscaling.min_replicas": 12, "gateway.instances": 12}, "prod").gateway.instances == 12


def test_config_parses_without_problems_for_both_stacks() -> None:
    for stack in ("dev", "prod"):
        raw, _ = _raw({}, stack)
        config, found = parse_config(raw)
        assert config is not None and found == []
    assert math.isfinite(spec().budget.usable)
