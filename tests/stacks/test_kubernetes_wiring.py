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


@pytest.mark.parametrize(("service_type", "policy"), [("LoadBalancer", "Local"), ("NodePort", "Local"),
                                                      ("ClusterIP", None)])
def test_the_public_service_keeps_client_addresses(service_type: str, policy: str | None) -> None:
    """Traffic from outside goes to a node's own Nginx pods, never on through another node (which would swap the
    client's address for its own, and the gateways would rate-limit the node); a ClusterIP Service takes no
    policy at all (the API server refuses one)."""
    _, r = rendered("medium", (("nginx.service_type", service_type),))
    (nginx,) = [s for s in services(r) if s["metadata"]["name"] == "nginx"]
    assert nginx["spec"].get("externalTrafficPolicy") == policy


def _container(r: Rendering, owner: str) -> dict[str, Any]:
    (pod,) = [p for p in pods(r) if p.owner == owner]
    (container,) = pod.containers
    return container


def _template(r: Rendering, owner: str) -> dict[str, Any]:
    kind_, name = owner.split("/")
    (x,) = [x for x in r.resources if x.inputs.get("kind") == kind_ and x.inputs["metadata"]["name"] == name]
    return dict(unwrap(x.inputs)["spec"]["template"]["spec"])


@pytest.mark.parametrize("tier", TIERS_)
def test_stopping_pods_serve_until_nginx_has_re_resolved(tier: str) -> None:
    """Nginx re-resolves the gateways' headless Service every RESOLVER_VALID_S and the cluster DNS caches its
    answer for its TTL: a gateway (and every pod in a Service's rotation) keeps serving that long after it was
    removed, with the kubelet's sleep action (no sleep binary needed), and still has its shutdown time after."""
    from components.nginx.config import CLUSTER_DNS_TTL_S, RESOLVER_VALID_S, SHUTDOWN_TIMEOUT_S

    _, r = rendered(tier)
    for owner in ("Deployment/nginx", "Deployment/api-gateway", "Deployment/user-service"):
        hook = _container(r, owner)["lifecycle"]["preStop"]
        assert hook == {"sleep": {"seconds": RESOLVER_VALID_S + CLUSTER_DNS_TTL_S}}, owner
        grace = _template(r, owner)["terminationGracePeriodSeconds"]
        assert grace - hook["sleep"]["seconds"] >= 25, f"{owner}: the drain eats the shutdown time"
    nginx_grace = _template(r, "Deployment/nginx")["terminationGracePeriodSeconds"]
    assert nginx_grace > RESOLVER_VALID_S + CLUSTER_DNS_TTL_S + SHUTDOWN_TIMEOUT_S


@pytest.mark.parametrize("sets", [(), (("gateway.liveness_path", "/livez"),)])
def test_liveness_is_shallow_and_separate_from_readiness(sets: tuple[tuple[str, Any], ...]) -> None:
    """Readiness asks health_path (which may check dependencies); liveness and startup never do, so a database
    outage takes pods out of rotation instead of restarting all of them."""
    spec, r = rendered("medium", sets)
    for owner, workload in (("Deployment/api-gateway", spec.gateway), ("Deployment/user-service", spec.services[0])):
        c = _container(r, owner)
        assert c["readinessProbe"]["httpGet"]["path"] == workload.health_path
        for probe in ("livenessProbe", "startupProbe"):
            if workload.liveness_path:
                assert c[probe]["httpGet"]["path"] == workload.liveness_path != workload.health_path
            else:
                assert "httpGet" not in c[probe] and c[probe]["tcpSocket"] == {"port": "http"}, (owner, probe)


def test_nginx_resolver_and_fully_qualified_names_follow_the_cluster_dns_config() -> None:
    sets = (("kubernetes.cluster_domain", "corp.internal"), ("kubernetes.dns_namespace", "dns"),
            ("kubernetes.dns_service", "coredns"))
    _, r = rendered("medium", sets)
    (conf,) = [unwrap(x.inputs)["data"]["nginx.conf"] for x in r.of_type("kubernetes:core/v1:ConfigMap")
               if "nginx.conf" in (x.inputs.get("data") or {})]
    assert "resolver coredns.dns.svc.corp.internal " in conf
    assert "server api-gateway-pods.banyan.svc.corp.internal:3003 " in conf
    redis_conf = [v for x in r.of_type("kubernetes:core/v1:ConfigMap")
                  for k, v in (unwrap(x.inputs).get("data") or {}).items() if k == "redis-node-0.conf"]
    assert redis_conf and "redis-node-0.redis-node.banyan.svc.corp.internal" in redis_conf[0]
    _, default = rendered("medium")
    assert "corp.internal" not in repr([unwrap(x.inputs) for x in default.resources])


@pytest.mark.parametrize("tier", TIERS_)
def test_redis_masters_and_replicas_never_share_a_node(tier: str) -> None:
    """redis-cli pairs a master with its replica by IP address only, and failovers swap them: with replicas,
    each Redis pod needs a node of its own (required anti-affinity against every other Redis node pod, not
    the creation Job); without replicas the spread stays best effort, so a small cluster still schedules."""
    spec, r = rendered(tier)
    (pod,) = [p for p in pods(r) if p.owner == "StatefulSet/redis-node"]
    template = _template(r, "StatefulSet/redis-node")
    required = (template.get("affinity") or {}).get("podAntiAffinity", {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution", [])
    if spec.redis.replicas_per_master == 0:
        assert required == []
        return
    assert tier == "large"
    (term,) = required
    assert term["topologyKey"] == "kubernetes.io/hostname"
    selector = term["labelSelector"]["matchLabels"]
    assert all(pod.labels.get(k) == v for k, v in selector.items()), "the term must select the Redis pods"
    creators = [labels for name, labels in _job_pods(r).items() if "create" in name]
    assert creators and not any(all(labels.get(k) == v for k, v in selector.items())
                                for labels in creators), "the creation Job must not count"


def _job_pods(r: Rendering) -> dict[str, dict[str, str]]:
    return {x.inputs["metadata"]["name"]: unwrap(x.inputs)["spec"]["template"]["metadata"]["labels"]
            for x in r.of_type("kubernetes:batch/v1:Job")}
