"""NetworkPolicies: only Nginx is reachable from outside; each store only from the parts that use it.

The rules are data first (`ingress_rules`, a pure function of the spec), then objects: a default-deny
policy for the namespace and one allow policy per destination part.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.postgres import kubernetes as postgres_k8s
from components.rabbitmq import kubernetes as rabbitmq_k8s
from components.target import KubernetesTarget
from model.spec import PlatformSpec

ANYWHERE = "*"
# Operators reach their clusters' pods from their own namespaces (status, management API).
CNPG_NAMESPACE = postgres_k8s.OPERATOR_NAMESPACE
RABBITMQ_OPERATOR_NAMESPACE = rabbitmq_k8s.OPERATOR_NAMESPACE

PortOrRange = int | tuple[int, int]


def _postgres_ports(spec: PlatformSpec) -> tuple[PortOrRange, ...]:
    """PostgreSQL, and CloudNativePG's instance manager (its status API, called by the operator)."""
    return (spec.postgres.port, postgres_k8s.STATUS_PORT)


def _rabbitmq_peer_ports(spec: PlatformSpec) -> tuple[PortOrRange, ...]:
    """What RabbitMQ nodes and the operator use among themselves: epmd, AMQP, management, Erlang
    distribution and the CLI tools' range."""
    mq = spec.rabbitmq
    return (rabbitmq_k8s.EPMD_PORT, mq.port, mq.management_port, rabbitmq_k8s.DISTRIBUTION_PORT,
            rabbitmq_k8s.CLI_PORT_RANGE)


def _redis_peer_ports(spec: PlatformSpec) -> tuple[PortOrRange, ...]:
    """Clients and the cluster bus."""
    return (spec.redis.port, spec.redis.bus_port)


@dataclass(frozen=True)
class Source:
    """Pods of a part in the stack's namespace, a whole other namespace, or anywhere."""

    part: str | None = None
    namespace: str | None = None

    @property
    def anywhere(self) -> bool:
        return self.part is None and self.namespace is None


@dataclass(frozen=True)
class Rule:
    """`sources` may open `ports` on the pods of `part`."""

    part: str
    ports: tuple[PortOrRange, ...]
    sources: tuple[Source, ...]


def ingress_rules(spec: PlatformSpec) -> list[Rule]:
    """Every path the platform needs, and nothing else."""
    apps = tuple(Source(part=w.name) for w in spec.workloads)
    db_clients = tuple(Source(part=w.name) for w in spec.workloads if w.database_client)
    gateway = spec.gateway
    return [
        Rule("nginx", (spec.nginx.listen_port,), (Source(),)),
        Rule(gateway.name, (gateway.port,), (Source(part="nginx"),)),
        *(Rule(s.name, (s.port,), (Source(part=gateway.name),)) for s in spec.services),
        Rule("postgres", _postgres_ports(spec),
             (*db_clients, Source(part="postgres-pooler"), Source(part="postgres"), Source(namespace=CNPG_NAMESPACE))),
        # The pooler's PgBouncer serves on the PostgreSQL port, as the instances do.
        Rule("postgres-pooler", (spec.postgres.port,), db_clients),
        Rule("rabbitmq", (spec.rabbitmq.port,), apps),
        Rule("rabbitmq", _rabbitmq_peer_ports(spec),
             (Source(part="rabbitmq"), Source(namespace=RABBITMQ_OPERATOR_NAMESPACE))),
        Rule("redis", (spec.redis.port,), (*apps, Source(part="redis-cluster-create"))),
        Rule("redis", _redis_peer_ports(spec), (Source(part="redis"),)),
    ]


def _port(port: PortOrRange) -> k8s.networking.v1.NetworkPolicyPortArgs:
    if isinstance(port, tuple):
        return k8s.networking.v1.NetworkPolicyPortArgs(port=port[0], end_port=port[1], protocol="TCP")
    return k8s.networking.v1.NetworkPolicyPortArgs(port=port, protocol="TCP")


def pod_selector(part: str, spec: PlatformSpec, target: KubernetesTarget, *, as_source: bool) -> dict[str, str]:
    """The labels a part's pods are sure to carry. CloudNativePG labels its own pods: the database
    instances by cluster and role (as a source also its setup jobs), the pooler by pooler name."""
    if part == "postgres":
        pg = spec.postgres
        return postgres_k8s.cluster_member_selector(pg) if as_source else postgres_k8s.instance_pod_selector(pg)
    if part == "postgres-pooler":
        return postgres_k8s.pooler_pod_selector(spec.postgres)
    return target.selector(part)


def _peer(source: Source, spec: PlatformSpec, target: KubernetesTarget) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    if source.namespace is not None:
        return k8s.networking.v1.NetworkPolicyPeerArgs(namespace_selector=k8s.meta.v1.LabelSelectorArgs(
            match_labels={"kubernetes.io/metadata.name": source.namespace}))
    assert source.part is not None
    return k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs(
        match_labels=pod_selector(source.part, spec, target, as_source=True)))


def build(parent: pulumi.Resource, name: str, spec: PlatformSpec,
          target: KubernetesTarget) -> list[k8s.networking.v1.NetworkPolicy]:
    policies = [
        k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata=target.metadata("default-deny-ingress", "network-policy"),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(), policy_types=["Ingress"], ingress=[]),
            opts=target.opts(parent),
        )
    ]
    by_part: dict[str, list[Rule]] = {}
    for rule in ingress_rules(spec):
        by_part.setdefault(rule.part, []).append(rule)
    for part, rules in sorted(by_part.items()):
        ingress = [
            k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                ports=[_port(p) for p in rule.ports],
                # No `from` admits every source; otherwise only the listed peers.
                from_=None if any(s.anywhere for s in rule.sources)
                else [_peer(s, spec, target) for s in rule.sources],
            )
            for rule in rules
        ]
        policies.append(k8s.networking.v1.NetworkPolicy(
            f"{name}-allow-{part}",
            metadata=target.metadata(f"allow-{part}", "network-policy"),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(
                    match_labels=pod_selector(part, spec, target, as_source=False)),
                policy_types=["Ingress"],
                ingress=ingress,
            ),
            opts=target.opts(parent),
        ))
    return policies
