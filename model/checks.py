"""Checks over the whole resolved spec, per target: names and host ports that would collide, the Docker host's
size against what the containers reserve, image tags against the version settings, and settings the target
ignores. Pure: each returns problems (the stack stops) and warnings (the preview says them)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from model.config import NAMESPACE, StackConfig, Target
from model.errors import ConfigProblem
from model.images import parse_image
from model.spec import PlatformSpec, ResourceSpec
from model.thresholds import monitoring_warnings, nginx_metrics, redis_metrics


def _problem(key: str, value: object, allowed: str) -> ConfigProblem:
    return ConfigProblem(f"{NAMESPACE}:{key}", value, allowed)


# ---- settings the target ignores ----------------------------------------------------------------------------

# Key path (`services[]` for every service) -> the one target it applies to, and why the other ignores it. The
# reference docs say the same ("Docker only", "(Kubernetes)"); a test keeps this table and the docs together.
TARGET_ONLY: dict[str, tuple[Target, str]] = {
    "gateway.autoscaling": ("kubernetes", "Docker has no autoscaler: instances is the count"),
    "services[].autoscaling": ("kubernetes", "Docker has no autoscaler: instances is the count"),
    "gateway.liveness_path": ("kubernetes", "Docker's health check uses health_path"),
    "services[].liveness_path": ("kubernetes", "Docker's health check uses health_path"),
    "services[].queue_scaling.enabled": ("kubernetes", "Docker has no autoscaler: the plan says what to scale"),
    "postgres.storage_gib": ("kubernetes", "a Docker volume takes what the host's disk has"),
    "rabbitmq.storage_gib": ("kubernetes", "a Docker volume takes what the host's disk has"),
    "redis.storage_gib": ("kubernetes", "a Docker volume takes what the host's disk has"),
    "nginx.service_type": ("kubernetes", "on Docker Nginx is published on the host: banyan:nginx.publish_address"),
    "rabbitmq.management_host_port": ("docker", ""),
    "nginx.publish_address": ("docker", "the Service type decides who reaches Nginx: banyan:nginx.service_type"),
    "kubernetes": ("kubernetes", ""),
    "monitoring.namespace": ("kubernetes", ""),
    "monitoring.pod_labels": ("kubernetes", ""),
    "monitoring.install_operator": ("kubernetes", ""),
    "monitoring.monitor_labels": ("kubernetes", ""),
    "monitoring.prometheus_port": ("docker", "the cluster's Prometheus serves its own UI"),
    "monitoring.retention_days": ("docker", "the cluster's Prometheus keeps its own retention"),
    "monitoring.evaluation_interval_s": ("docker", "the cluster's Prometheus sets its own"),
    "monitoring.alertmanager_webhook_url": ("docker", "the cluster's Alertmanager has its own receivers"),
    "docker": ("docker", ""),
    "swarm": ("swarm", ""),
    "postgres.backup.object_store_cidrs": ("kubernetes", "on Docker the repository is a volume or the "
                                           "container's own S3 client"),
    "postgres.backup.max_wal_backlog_mib": ("docker", "CloudNativePG keeps WAL until it is archived"),
}


def _set_values(model: BaseModel, path: list[str], key: str) -> Iterator[str]:
    """The key paths under `path` the stack file sets to something other than the default."""
    head, rest = path[0], path[1:]
    if head.endswith("[]"):
        for i, item in enumerate(getattr(model, head[:-2])):
            yield from _set_values(item, rest, f"{key}{head[:-2]}[{i}].")
        return
    if head not in model.model_fields_set:
        return
    value = getattr(model, head)
    if rest:
        yield from _set_values(value, rest, f"{key}{head}.")
    elif value != type(model).model_fields[head].default:
        yield f"{key}{head}"


def ignored_settings(config: StackConfig) -> list[str]:
    """A warning for every setting of the other target: it is ignored, which the user should hear about."""
    warnings = []
    for path, (target, why) in TARGET_ONLY.items():
        if config.target == target:
            continue
        for key in _set_values(config, path.split("."), ""):
            reason = f" ({why})" if why else ""
            warnings.append(f"{NAMESPACE}:{key} only applies to target {target}; ignored{reason}")
    return warnings


# ---- image tag against the version setting -------------------------------------------------------------------

def image_versions(config: StackConfig) -> list[ConfigProblem]:
    """RabbitMQ's and Redis's `version` (major.minor) against the numbers their image's tag starts with (as far
    as the tag gives them): the config files are rendered for the version, so the server must be that one.
    Images whose name is not the product's (`registry.example.com/cache:2024.01`) carry no such promise.
    PostgreSQL's major version is checked where its spec is resolved (model/tiers.py)."""
    problems = []
    for key, product, cfg in (("rabbitmq", "RabbitMQ", config.rabbitmq), ("redis", "Redis", config.redis)):
        ref = parse_image(cfg.image)  # the config model accepted it, so it parses
        if product.lower() not in ref.repository.rsplit("/", 1)[-1]:
            continue
        tag = ref.version() or ()
        wanted = tuple(int(n) for n in cfg.version.split("."))
        common = min(len(tag), len(wanted))
        if common and tag[:common] != wanted[:common]:
            shown = ".".join(str(n) for n in tag[:len(wanted)])
            problems.append(_problem(f"{key}.image", cfg.image,
                                     f"the tag names {product} {shown} but banyan:{key}.version is {cfg.version}; "
                                     f"allowed: an image of {product} {cfg.version}, or set the version to match"))
    return problems


# ---- Docker: the host's size, and host ports ------------------------------------------------------------------

@dataclass(frozen=True)
class HostLine:
    """One part's containers on the Docker host."""

    key: str
    name: str
    count: int
    resources: ResourceSpec


def docker_host_lines(spec: PlatformSpec) -> list[HostLine]:
    """Every long-running container the dev stack starts (the one-shot Redis cluster creation step exits)."""
    lines = [HostLine("gateway", spec.gateway.name, spec.gateway.instances, spec.gateway.resources)]
    lines += [HostLine(f"services[{i}]", s.name, s.instances, s.resources) for i, s in enumerate(spec.services)]
    lines += [
        HostLine("postgres", spec.postgres.name, len(spec.postgres.instance_names), spec.postgres.resources),
        HostLine("rabbitmq", spec.rabbitmq.name, spec.rabbitmq.nodes, spec.rabbitmq.resources),
        HostLine("redis", spec.redis.name, spec.redis.nodes, spec.redis.resources),
        HostLine("nginx", spec.nginx.name, spec.nginx.instances, spec.nginx.resources),
    ]
    return lines


def _sum(lines: list[HostLine], amount: Any) -> tuple[str, int]:
    terms = [(f"{ln.name} {ln.count} x {amount(ln.resources)}", ln.count * amount(ln.resources)) for ln in lines]
    total = sum(n for _, n in terms)
    return f"{' + '.join(t for t, _ in terms)} = {total}", total


def docker_host(config: StackConfig, spec: PlatformSpec) -> tuple[list[ConfigProblem], list[str]]:
    """What the containers declare against the host's declared size (banyan:docker)."""
    host = config.docker
    lines = docker_host_lines(spec)
    problems = [
        _problem(f"{ln.key}.resources.limits.cpu_millis", ln.resources.limits.cpu_millis,
                 f"Docker refuses a CPU limit above the host's CPU count, and banyan:docker.host_cpu_millis says "
                 f"the host has {host.host_cpu_millis}; allowed: at most {host.host_cpu_millis}, or declare the "
                 "host's real size in banyan:docker.host_cpu_millis")
        for ln in lines if ln.resources.limits.cpu_millis > host.host_cpu_millis
    ]
    warnings = []
    cpu_terms, cpu = _sum(lines, lambda r: r.requests.cpu_millis)
    if cpu > host.host_cpu_millis:
        warnings.append(
            f"banyan:docker.host_cpu_millis: the containers reserve {cpu_terms} millicores of CPU, more than the "
            f"host's {host.host_cpu_millis}: under load none gets its reservation. Fewer instances, smaller "
            "requests, or a larger host (declared in banyan:docker.host_cpu_millis)")
    mem_terms, memory = _sum(lines, lambda r: r.limits.memory_mib)
    if memory > host.host_memory_mib:
        _, reserved = _sum(lines, lambda r: r.requests.memory_mib)
        warnings.append(
            f"banyan:docker.host_memory_mib: the containers' memory limits add up to {mem_terms} MiB (reservations "
            f"{reserved} MiB), more than the host's {host.host_memory_mib} MiB: under load the kernel's OOM killer "
            "stops containers before they reach their limits. Fewer instances, smaller limits, or a larger host "
            "(declared in banyan:docker.host_memory_mib)")
    return problems, warnings


def docker_host_ports(spec: PlatformSpec) -> list[ConfigProblem]:
    """One address and port can be published once: Nginx's public port and RabbitMQ's management port (on the
    host's 127.0.0.1) clash where Nginx publishes on that address or on every address."""
    mq, ng = spec.rabbitmq, spec.nginx
    if mq.management_host_port is None or mq.management_host_port != ng.public_port:
        return []
    address = ipaddress.ip_address(ng.publish_address)
    if not (address.is_unspecified or address == ipaddress.ip_address("127.0.0.1")):
        return []
    return [_problem("rabbitmq.management_host_port", mq.management_host_port,
                     f"banyan:nginx.port publishes {ng.public_port} on {ng.publish_address} too, and one host "
                     "address and port can be published once; allowed: another port")]


# ---- Kubernetes: object names in the stack's namespace -------------------------------------------------------

# Where the operators the stack installs run (components/postgres/kubernetes.py and rabbitmq/kubernetes.py).
OPERATOR_NAMESPACES = {"cnpg-system": "CloudNativePG's operator", "rabbitmq-system": "the RabbitMQ Cluster Operator"}
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class KubeObject:
    """An object in the stack's namespace: kind, name, who makes it, and the config key that decides the name."""

    kind: str
    name: str
    owner: str
    key: str
    value: str


def kubernetes_objects(spec: PlatformSpec) -> list[KubeObject]:
    """Every namespaced object the stack makes, and those the operators make for it (their Services and Secrets
    above all): the platform's parts first, so a clashing service is the one reported. ConfigMaps named after
    their content end in `-*`. tests/stacks/test_kubernetes_names.py checks the stack renders nothing else."""
    objs: list[KubeObject] = []

    def add(key: str, value: str, owner: str, *items: tuple[str, str]) -> None:
        objs.extend(KubeObject(kind, name, owner, key, value) for kind, name in items)

    pg, mq, rd, ng, gw = spec.postgres.name, spec.rabbitmq.name, spec.redis.name, spec.nginx.name, spec.gateway.name
    pooler = f"{pg}-pooler"
    add("postgres", pg, "banyan:postgres", ("Cluster", pg), ("Pooler", pooler), ("Secret", f"{pg}-app-credentials"),
        ("PodDisruptionBudget", pooler))
    if spec.postgres.backup is not None:
        # components/postgres/backup_kubernetes.py (tests/stacks/test_kubernetes_names.py keeps the names equal).
        add("postgres.backup.enabled", "true", "banyan:postgres.backup", ("ObjectStore", f"{pg}-backups"),
            ("ScheduledBackup", f"{pg}-full"), ("Secret", f"{pg}-backup-credentials"))
    cnpg = f"CloudNativePG (for banyan:{pg})"
    add("postgres", pg, cnpg, ("Service", f"{pg}-rw"), ("Service", f"{pg}-ro"), ("Service", f"{pg}-r"),
        ("Service", pooler), ("Deployment", pooler), ("Secret", f"{pg}-ca"), ("Secret", f"{pg}-server"),
        ("Secret", f"{pg}-replication"), ("PodDisruptionBudget", pg), ("PodDisruptionBudget", f"{pg}-primary"),
        ("ServiceAccount", pg), ("ServiceAccount", pooler))
    add("rabbitmq", mq, "banyan:rabbitmq", ("RabbitmqCluster", mq), ("Secret", f"{mq}-default-user"),
        ("PodDisruptionBudget", mq))
    # The applications' user, the Messaging Topology Operator's objects (components/rabbitmq/kubernetes.py).
    app_user = f"{mq}-banyan-app"
    add("rabbitmq", mq, "banyan:rabbitmq", ("User", app_user), ("Permission", f"{app_user}-permission"),
        ("Secret", f"{app_user}-credentials"))
    operator = f"the RabbitMQ Cluster Operator (for banyan:{mq})"
    add("rabbitmq", mq, operator, ("Service", mq), ("Service", f"{mq}-nodes"), ("StatefulSet", f"{mq}-server"),
        ("ConfigMap", f"{mq}-server-conf"), ("ConfigMap", f"{mq}-plugins-conf"), ("Secret", f"{mq}-erlang-cookie"),
        ("ServiceAccount", f"{mq}-server"))
    node = f"{rd}-node"
    add("redis", rd, "banyan:redis", ("Service", node), ("StatefulSet", node), ("PodDisruptionBudget", node),
        ("Secret", f"{rd}-auth"), ("ConfigMap", f"{rd}-config-*"), ("Job", f"{rd}-cluster-create"))
    add("nginx", ng, "banyan:nginx", ("Deployment", ng), ("Service", ng), ("PodDisruptionBudget", ng),
        ("ConfigMap", f"{ng}-conf-*"))
    add("gateway", gw, "banyan:gateway", ("Service", f"{gw}-pods"))
    for key, w in (("gateway", spec.gateway), *((f"services[{i}].name", s) for i, s in enumerate(spec.services))):
        owner = f"banyan:{key.removesuffix('.name')}"
        add(key, w.name, owner, ("Deployment", w.name), ("Service", w.name), ("HorizontalPodAutoscaler", w.name),
            ("PodDisruptionBudget", w.name), ("Secret", f"{w.name}-env"))
    # NetworkPolicies, one pair per part that has pods (components/network_policies.py).
    policy_parts = [("nginx", ng, ng), ("gateway", gw, gw), ("postgres", pg, pg), ("postgres", pg, pooler),
                    ("rabbitmq", mq, mq), ("redis", rd, rd),
                    *((f"services[{i}].name", s.name, s.name) for i, s in enumerate(spec.services))]
    for key, value, part in policy_parts:
        add(key, value, f"banyan:{key.removesuffix('.name')}", ("NetworkPolicy", f"allow-{part}"),
            ("NetworkPolicy", f"allow-{part}-egress"))
    add("redis", rd, "banyan:redis", ("NetworkPolicy", f"allow-{rd}-cluster-create-egress"))
    # Scaling on queue depth (components/keda.py): a ScaledObject per such service, whose HPA KEDA names after it
    # (listed above), and once per stack the monitoring user (the Topology Operator's objects) and its
    # TriggerAuthentication.
    for i, s in enumerate(spec.services):
        if s.queue_scaling is not None:
            add(f"services[{i}].name", s.name, f"banyan:services[{i}]", ("ScaledObject", s.name))
    if spec.queue_scaled:
        keda_user = f"{mq}-banyan-keda"
        add("rabbitmq", mq, "banyan:services[].queue_scaling", ("User", keda_user),
            ("Permission", f"{keda_user}-permission"), ("Secret", f"{keda_user}-credentials"),
            ("TriggerAuthentication", "rabbitmq-queue-depth"))
    if spec.monitoring.enabled:
        # components/monitoring/kubernetes.py: a PodMonitor per scraped part, one PrometheusRule.
        add("monitoring.enabled", "true", "banyan:monitoring", ("PodMonitor", pg), ("PodMonitor", mq),
            ("PrometheusRule", f"{spec.project}-alerts"))
        # The sidecars' monitors, and mtail's program (the Nginx pods mount it).
        if redis_metrics(spec):
            add("monitoring.enabled", "true", "banyan:monitoring", ("PodMonitor", rd))
        if nginx_metrics(spec):
            add("monitoring.mtail_image", str(spec.monitoring.mtail_image), "banyan:monitoring",
                ("PodMonitor", ng), ("ConfigMap", f"{ng}-mtail-*"))
    add("kubernetes.namespace", spec.kubernetes.namespace, "banyan",
        ("NetworkPolicy", "default-deny-ingress"), ("NetworkPolicy", "default-deny-egress"))
    return objs


def kubernetes_names(spec: PlatformSpec, reported: frozenset[str] = frozenset()) -> list[ConfigProblem]:
    """Two objects of one kind cannot share a name in a namespace; the first maker keeps it. A key in `reported`
    (a name already refused, as a host name) is not refused twice."""
    problems: list[ConfigProblem] = []
    owners: dict[tuple[str, str], KubeObject] = {}
    refused = {key.removeprefix(f"{NAMESPACE}:") for key in reported}
    for obj in kubernetes_objects(spec):
        first = owners.setdefault((obj.kind, obj.name), obj)
        if first is obj or first.owner == obj.owner or obj.key in refused:
            continue
        refused.add(obj.key)
        problems.append(_problem(obj.key, obj.value,
                                 f"the Kubernetes {obj.kind} {obj.name!r} (made for {obj.owner}) is already made by "
                                 f"{first.owner} in namespace {spec.kubernetes.namespace}; choose another name"))
    return problems


def kubernetes_namespace(config: StackConfig) -> list[ConfigProblem]:
    """The stack owns its namespace (creates it, retains it, denies all traffic in it but its own): never one
    that the cluster, the operators, the cluster DNS or the scrapers live in."""
    k8s = config.kubernetes
    others = dict.fromkeys(SYSTEM_NAMESPACES, "the cluster's own")
    if k8s.install_operators:
        others.update({ns: f"where {who} runs" for ns, who in OPERATOR_NAMESPACES.items()})
    others[k8s.dns_namespace] = "the cluster DNS's (banyan:kubernetes.dns_namespace)"
    others[config.monitoring.namespace] = "the scrapers' (banyan:monitoring.namespace)"
    if k8s.namespace not in others:
        return []
    return [_problem("kubernetes.namespace", k8s.namespace,
                     f"this namespace is {others[k8s.namespace]}, and the stack owns its namespace (it creates it and "
                     "denies all traffic in it but the platform's); allowed: a namespace of its own")]


def whole_spec(config: StackConfig, spec: PlatformSpec,
               reported: frozenset[str] = frozenset()) -> tuple[list[ConfigProblem], list[str]]:
    """Every check of this module that applies to the stack's target; `reported`: keys already refused."""
    problems = image_versions(config)
    warnings = ignored_settings(config) + monitoring_warnings(spec)
    if spec.target == "docker":
        host_problems, host_warnings = docker_host(config, spec)
        problems += host_problems + docker_host_ports(spec)
        warnings += host_warnings
    elif spec.target == "kubernetes":
        problems += kubernetes_namespace(config) + kubernetes_names(spec, reported)
    return problems, warnings
