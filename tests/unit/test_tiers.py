"""The tier presets equal the guide's resource planning table, and resolve into sane specs."""

from __future__ import annotations

import re

import pytest

from model.tiers import HPA_CPU_PERCENT, HPA_MEMORY_PERCENT, POOL, PREFETCH_RANGE, TIERS
from tests.helpers import shared_file, spec_for

TIER_COLUMNS = ("small", "medium", "large")


def planning_table() -> dict[str, dict[str, str]]:
    """The guide's "Resource Planning" markdown table, read from the seed itself."""
    seed = next(iter(sorted(shared_file("seeds").glob("*.txt"))))
    text = seed.read_text()
    section = text[text.index("### Resource Planning"):]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    table: dict[str, dict[str, str]] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        table[cells[0]] = dict(zip(TIER_COLUMNS, cells[1:], strict=True))
    return table


def first_number(cell: str) -> int:
    return int(re.search(r"\d+", cell).group())  # type: ignore[union-attr]


def test_the_guide_table_has_the_rows_we_map() -> None:
    assert set(planning_table()) == {"API Gateway", "Services", "PostgreSQL", "RabbitMQ", "Redis"}


@pytest.mark.parametrize("tier", TIER_COLUMNS)
def test_counts_equal_the_planning_table(tier: str) -> None:
    table = planning_table()
    preset = TIERS[tier]
    assert preset.gateway_instances == first_number(table["API Gateway"][tier])
    assert preset.service_instances == first_number(table["Services"][tier])
    assert preset.rabbitmq_nodes == first_number(table["RabbitMQ"][tier])
    assert preset.redis_nodes == first_number(table["Redis"][tier])
    pg = table["PostgreSQL"][tier]
    replicas = re.search(r"(\d+) replicas", pg)
    if replicas:
        assert preset.postgres_replicas == int(replicas.group(1))
    elif pg == "1 primary":
        assert preset.postgres_replicas == 0
    else:
        # "Cluster": the issue reads it as an HA cluster of 1 primary + 3 replicas.
        assert pg == "Cluster"
        assert preset.postgres_replicas == 3


def test_large_redis_is_three_masters_with_one_replica_each() -> None:
    spec = spec_for(tier="large")
    redis = spec.redis
    assert (redis.nodes, redis.masters, redis.replicas_per_master, redis.mode) == (6, 3, 1, "cluster")
    medium = spec_for(tier="medium").redis
    assert (medium.nodes, medium.masters, medium.replicas_per_master) == (3, 3, 0)
    assert spec_for(tier="small").redis.mode == "standalone"


@pytest.mark.parametrize("tier", TIER_COLUMNS)
def test_resources_requests_never_exceed_limits(tier: str) -> None:
    for part, res in TIERS[tier].resources.items():
        assert res.requests.cpu_millis <= res.limits.cpu_millis, part
        assert res.requests.memory_mib <= res.limits.memory_mib, part


@pytest.mark.parametrize("tier", ["medium", "large"])
def test_app_limits_follow_the_guides_swarm_example(tier: str) -> None:
    for part in ("gateway", "service"):
        res = TIERS[tier].resources[part]
        assert (res.limits.cpu_millis, res.limits.memory_mib) == (2000, 2048)
        assert (res.requests.cpu_millis, res.requests.memory_mib) == (1000, 1024)


@pytest.mark.parametrize("tier", TIER_COLUMNS)
def test_autoscaler_bounds_start_at_the_tier_count_and_use_the_guides_targets(tier: str) -> None:
    spec = spec_for("prod", tier=tier)
    preset = TIERS[tier]
    assert spec.gateway.autoscaling.enabled
    assert spec.gateway.autoscaling.min_replicas == preset.gateway_instances
    assert spec.gateway.autoscaling.max_replicas >= preset.gateway_instances
    for svc in spec.services:
        assert svc.autoscaling.min_replicas == preset.service_instances
        assert (svc.autoscaling.cpu_percent, svc.autoscaling.memory_percent) == (HPA_CPU_PERCENT, HPA_MEMORY_PERCENT)
    assert (HPA_CPU_PERCENT, HPA_MEMORY_PERCENT) == (70, 80)


def test_docker_has_no_autoscaler_so_budget_uses_fixed_counts() -> None:
    spec = spec_for("dev", tier="large")
    assert not spec.gateway.autoscaling.enabled
    assert all(line.max_instances == TIERS["large"].service_instances for line in spec.budget.lines)


def test_prefetch_and_pool_by_workload_kind_follow_the_guide() -> None:
    assert PREFETCH_RANGE == {"cpu": (1, 2), "io": (10, 20), "memory": (1, 5)}
    assert POOL["io"].max == 10 and POOL["io"].min == 2 and POOL["io"].idle_timeout_ms == 30_000
    assert POOL["cpu"].max == 2 and POOL["memory"].max == 5
    spec = spec_for(services__0__workload="cpu")
    assert spec.services[0].prefetch == 1 and spec.services[0].pool.max == 2
    assert spec.services[1].prefetch == 10 and spec.services[1].pool.max == 10


def test_overrides_win_over_the_tier() -> None:
    spec = spec_for(tier="medium", postgres__replicas=1, gateway__instances=7,
                    services__1__instances=4, gateway__resources={"limits": {"memory_mib": 4096}})
    assert spec.postgres.replicas == 1
    assert spec.gateway.instances == 7
    assert [s.instances for s in spec.services] == [10, 4]
    assert spec.gateway.resources.limits.memory_mib == 4096
    assert spec.gateway.resources.limits.cpu_millis == 2000


def test_prefetch_outside_the_guide_range_warns() -> None:
    spec = spec_for(services__0__workload="cpu", services__0__prefetch=20)
    assert any("services[0].prefetch 20" in w for w in spec.warnings)


def test_gateway_instances_from_expected_load() -> None:
    spec = spec_for(gateway__expected_peak_rps=5000)
    assert spec.gateway.instances == 10


def test_spec_is_frozen() -> None:
    spec = spec_for()
    with pytest.raises(Exception, match="frozen"):
        spec.gateway.instances = 3  # type: ignore[misc]


def test_the_resolvers_workload_fields_are_exactly_the_specs() -> None:
    """The TypedDict the resolver fills for the gateway and every service lists WorkloadSpec's fields again
    (so the splat is type-checked); this keeps the two lists one."""
    from model.spec import WorkloadSpec
    from model.tiers import _WorkloadFields

    assert set(_WorkloadFields.__annotations__) == set(WorkloadSpec.model_fields)
