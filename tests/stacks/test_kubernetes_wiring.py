"""Kubernetes wiring of the prod stack: every Service sends its traffic to a port the pods it selects declare
(a targetPort naming no container port leaves the Service without endpoints, silently), and the public
Service is Nginx's, on the public port `banyan:nginx.port`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from model.spec import PlatformSpec
from testkit import Rendering, render_stack, unwrap
from testkit.component import stack_spec

TIERS_ = ("small", "medium", "large")
# Pods whose containers the stack itself declares (operators' pods are described by their own CRs).
POD_OWNERS = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet")


@dataclass(frozen=True)
class Pods:
    owner: str
    labels: dict[str, str]
    containers: list[dict[str, Any]]

    def port_names(self) -> set[str]:
        return {p["name"] for c in self.containers for p in c.get("ports") or [] if "name" in p}

    def port_numbers(self) -> set[int]:
        return {p["containerPort"] for c in self.containers for p in c.get("ports") or []}


@cache
def rendered(tier: str, extra: tuple[tuple[str, Any], ...] = ()) -> tuple[PlatformSpec, Rendering]:
    sets = {"tier": tier, **dict(extra)}
    return stack_spec("prod", set=sets), render_stack("prod", set=sets)


def pods(r: Rendering) -> list[Pods]:
    found = []
    for type_ in POD_OWNERS:
        for x in r.of_type(type_):
            template = unwrap(x.inputs)["spec"]["template"]
            found.append(Pods(f"{x.inputs['kind']}/{x.inputs['metadata']['name']}", template["metadata"]["labels"],
                              template["spec"]["containers"]))
    return found


def services(r: Rendering) -> list[dict[str, Any]]:
    return [unwrap(x.inputs) for x in r.of_type("kubernetes:core/v1:Service")]


def selected(service: dict[str, Any], r: Rendering) -> list[Pods]:
    selector = service["spec"].get("selector") or {}
    return [p for p in pods(r) if selector and all(p.labels.get(k) == v for k, v in selector.items())]


@pytest.mark.parametrize("tier", TIERS_)
def test_every_service_targets_a_port_its_pods_declare(tier: str) -> None:
    _, r = rendered(tier)
    assert len(services(r)) >= 5
    for service in services(r):
        name = service["metadata"]["name"]
        chosen = selected(service, r)
        assert chosen, f"Service {name} selects no pods"
        for port in service["spec"]["ports"]:
            # Kubernetes: an unset targetPort is the port itself.
            target = port.get("targetPort", port["port"])
            for p in chosen:
                declared = p.port_names() if isinstance(target, str) else p.port_numbers()
                assert target in declared, f"Service {name} port {port['port']} -> {target!r}: not a port of {p.owner}"


@pytest.mark.parametrize(("tier", "sets"), [("small", {}), ("large", {}),
                                            ("medium", {"nginx.port": 9443, "nginx.service_type": "NodePort"})])
def test_the_public_service_is_nginx_on_the_public_port(tier: str, sets: dict[str, Any]) -> None:
    spec, r = rendered(tier, tuple(sorted(sets.items())))
    public = [s for s in services(r) if s["spec"].get("type", "ClusterIP") != "ClusterIP"]
    assert len(public) == 1, "one way in"
    (service,) = public
    assert service["spec"]["type"] == spec.nginx.service_type
    (nginx,) = selected(service, r)
    assert nginx.owner == "Deployment/nginx"
    (port,) = service["spec"]["ports"]
    assert port["port"] == spec.nginx.public_port == sets.get("nginx.port", 8080)
    target = port["targetPort"]
    listens = {p["containerPort"] for c in nginx.containers for p in c["ports"]
               if target in (p.get("name"), p["containerPort"])}
    assert listens == {spec.nginx.listen_port}
