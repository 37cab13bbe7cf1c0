"""The policy pack on the swarm stack: its Swarm services pass every rule, and each rule catches a service
that breaks it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from policy import rules
from policy.rules import Report, Resource
from tests.unit.test_policy import RESOURCE_RULES, resources, violations

SERVICE = rules.DOCKER_SERVICE


def service(instance: str) -> Resource:
    found = [r for r in resources("swarm", "medium") if r.type == SERVICE
             and {i["label"]: i["value"] for i in r.props["labels"]}["banyan.instance"] == instance]
    assert len(found) == 1, instance
    return found[0]


def changed(subject: Resource, path: tuple[str, ...], value: Any) -> Resource:
    props: dict[str, Any] = copy.deepcopy(dict(subject.props))
    target: Any = props
    for key in path[:-1]:
        target = target[key]
    if value is None:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return Resource(subject.type, props, subject.urn, subject.name, subject.protect)


@pytest.mark.parametrize("tier", ["small", "medium", "large"])
@pytest.mark.parametrize("rule", [*sorted(RESOURCE_RULES), "swarm-rollout"])
def test_every_resource_of_the_swarm_stack_passes(rule: str, tier: str) -> None:
    check = rules.check_swarm_rollout if rule == "swarm-rollout" else RESOURCE_RULES[rule]
    problems = []
    for r in resources("swarm", tier):
        report: Report = check(r)
        problems += violations(report) + [f"unknown: {u}" for u in report.unknown]
    assert problems == []
    assert any(r.type == SERVICE for r in resources("swarm", tier))


def test_a_service_that_pauses_a_failed_update_or_does_not_converge_fails() -> None:
    gateway = service("api-gateway")
    paused = violations(rules.check_swarm_rollout(changed(gateway, ("updateConfig", "failureAction"), "pause")))
    assert len(paused) == 1 and "roll back" in paused[0]
    detached = violations(rules.check_swarm_rollout(changed(gateway, ("convergeConfig",), None)))
    assert len(detached) == 1 and "convergeConfig" in detached[0]
    never = violations(rules.check_swarm_rollout(changed(gateway, ("taskSpec", "restartPolicy", "condition"), "none")))
    assert len(never) == 1 and "restarted" in never[0]


def test_a_service_without_limits_or_with_an_unpinned_image_fails() -> None:
    gateway = service("api-gateway")
    no_memory = changed(gateway, ("taskSpec", "resources", "limits", "memoryBytes"), 0)
    assert ["memory" in v for v in violations(rules.check_resource_limits(no_memory))] == [True]
    latest = changed(gateway, ("taskSpec", "containerSpec", "image"), "python:latest")
    assert len(violations(rules.check_image_pinned(latest))) == 1


def test_only_nginx_publishes_a_port_on_the_swarm() -> None:
    assert violations(rules.check_public_ports(service("nginx"))) == []
    published = changed(service("postgres-primary"), ("endpointSpec", "ports"),
                        [{"targetPort": 5432, "publishedPort": 5432, "publishMode": "ingress"}])
    assert ["every node" in v for v in violations(rules.check_public_ports(published))] == [True]


def test_the_budget_counts_swarm_replicas_against_the_postgresql_config_they_mount() -> None:
    budget = rules.read_budget(resources("swarm", "medium"))
    assert {s.max_connections for s in budget.servers} == {260} and len(budget.servers) == 3
    assert budget.total == 200
    grown = [changed(r, ("mode", "replicated", "replicas"), 30) if r.type == SERVICE and "order-service" in r.name
             else r for r in resources("swarm", "medium")]
    found = violations(rules.check_connection_budget(grown))
    assert found and "order-service 30 x 10" in found[0]
