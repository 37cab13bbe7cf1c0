"""NetworkPolicies: only Nginx is reachable from outside; each store only from the parts that use it; each pod
reaches only the cluster DNS, the parts it uses and, where it must, the API server.

The rules are data first (`ingress_rules`, `egress_rules`: pure functions of the spec), then objects: a
default-deny policy per direction for the namespace, one ingress policy per destination part and one egress
policy per source part.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.monitoring import config as mc
from components.postgres import backup_kubernetes as postgres_backup_k8s
from components.postgres import kubernetes as postgres_k8s
from components.rabbitmq import kubernetes as rabbitmq_k8s
from components.redis import kubernetes as redis_k8s
from components.target import KubernetesTarget
from model.spec import PlatformSpec
from model.thresholds import nginx_metrics, redis_metrics

# Operators reach their clusters' pods from their own namespaces: CloudNativePG its instances' status API (8000)
# and PostgreSQL (its documentation asks for both), the RabbitMQ Cluster Operator the management API (15672).
# Their pods are picked by the label both the Helm charts and the upstream manifests give them.
CNPG_NAMESPACE = postgres_k8s.OPERATOR_NAMESPACE
CNPG_OPERATOR_LABELS = (("app.kubernetes.io/name", "cloudnative-pg"),)
RABBITMQ_OPERATOR_NAMESPACE = rabbitmq_k8s.OPERATOR_NAMESPACE
RABBITMQ_OPERATOR_LABELS = (("app.kubernetes.io/name", "rabbitmq-cluster-operator"),)
# The Messaging Topology Operator (it makes the applications' user) calls the management API too. The Helm chart
# names its pods after the chart, so the label above admits them already; the upstream manifest
# (messaging-topology-operator.yaml) labels them with their own name.
RABBITMQ_TOPOLOGY_OPERATOR_LABELS = (("app.kubernetes.io/name", "messaging-topology-operator"),)
DNS_PORT = 53
# The `kubernetes` Service's port, and what it forwards to (kubeadm and most distributions: 6443). Policies
# see the forwarded address and port, so both are open where the API server is.
API_SERVER_PORTS = (443, 6443)
ANY_ADDRESS = ("0.0.0.0/0", "::/0")

PortOrRange = int | tuple[int, int]


@dataclass(frozen=True)
class Peer:
    """The other end of a connection: the pods of a part in the stack's namespace; the pods of another namespace
    that carry `labels` (none: every pod there); address blocks outside the pod network; or, with nothing set,
    anywhere."""

    part: str | None = None
    namespace: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    cidrs: tuple[str, ...] = ()

    @property
    def anywhere(self) -> bool:
        return self.part is None and self.namespace is None and not self.cidrs


@dataclass(frozen=True)
class Rule:
    """Ingress: `peers` may open `ports` on the pods of `part`. Egress: the pods of `part` may open `ports` on
    `peers`."""

    part: str
    ports: tuple[PortOrRange, ...]
    peers: tuple[Peer, ...]
    protocols: tuple[str, ...] = ("TCP",)


def _postgres_ports(spec: PlatformSpec) -> tuple[PortOrRange, ...]:
    """PostgreSQL, and CloudNativePG's instance manager (its status API: the operator calls it, and the
    instances ping each other's failsafe endpoint there)."""
    return (spec.postgres.port, postgres_k8s.STATUS_PORT)


def _rabbitmq_peer_ports(spec: PlatformSpec) -> tuple[PortOrRange, ...]:
    """What RabbitMQ nodes use among themselves: epmd, AMQP, management, Erlang distribution and the CLI tools'
    range."""
    mq = spec.rabbitmq
    return (rabbitmq_k8s.EPMD_PORT, mq.port, mq.management_port, rabbitmq_k8s.DISTRIBUTION_PORT,
            rabbitmq_k8s.CLI_PORT_RANGE)


def _redis_peer_ports(spec: PlatformSpec) -> tuple[PortOrRange, ...]:
    """Replication (the client port) and the cluster bus."""
    return (spec.redis.port, spec.redis.bus_port)


def _monitoring(spec: PlatformSpec) -> Peer:
    return Peer(namespace=spec.monitoring.namespace, labels=spec.monitoring.pod_labels)


def _keda(spec: PlatformSpec) -> Peer:
    kube = spec.kubernetes
    return Peer(namespace=kube.keda_namespace, labels=kube.keda_operator_labels)


def _dns(spec: PlatformSpec) -> Peer:
    kube = spec.kubernetes
    return Peer(namespace=kube.dns_namespace, labels=kube.dns_pod_labels)


def _api_server(spec: PlatformSpec) -> Peer:
    cidrs = spec.kubernetes.api_server_cidrs
    return Peer(cidrs=tuple(cidrs) if cidrs else ANY_ADDRESS)


def ingress_rules(spec: PlatformSpec) -> list[Rule]:
    """Every path into the platform's pods it needs, and nothing else."""
    apps = tuple(Peer(part=w.name) for w in spec.workloads)
    db_clients = tuple(Peer(part=w.name) for w in spec.workloads if w.database_client)
    gateway = spec.gateway
    cnpg = Peer(namespace=CNPG_NAMESPACE, labels=CNPG_OPERATOR_LABELS)
    monitoring = _monitoring(spec)
    return [
        Rule("nginx", (spec.nginx.listen_port,), (Peer(),)),
        Rule(gateway.name, (gateway.port,), (Peer(part="nginx"),)),
        *(Rule(s.name, (s.port,), (Peer(part=gateway.name),)) for s in spec.services),
        Rule("postgres", (spec.postgres.port,),
             (*db_clients, Peer(part="postgres-pooler"), Peer(part="postgres"), cnpg)),
        Rule("postgres", (postgres_k8s.STATUS_PORT,), (Peer(part="postgres"), cnpg)),
        Rule("postgres", (postgres_k8s.METRICS_PORT,), (monitoring,)),
        # The pooler's PgBouncer serves on the PostgreSQL port, as the instances do.
        Rule("postgres-pooler", (spec.postgres.port,), db_clients),
        Rule("postgres-pooler", (postgres_k8s.POOLER_METRICS_PORT,), (monitoring,)),
        Rule("rabbitmq", (spec.rabbitmq.port,), apps),
        Rule("rabbitmq", _rabbitmq_peer_ports(spec), (Peer(part="rabbitmq"),)),
        Rule("rabbitmq", (spec.rabbitmq.management_port,),
             (Peer(namespace=RABBITMQ_OPERATOR_NAMESPACE, labels=RABBITMQ_OPERATOR_LABELS),
              Peer(namespace=RABBITMQ_OPERATOR_NAMESPACE, labels=RABBITMQ_TOPOLOGY_OPERATOR_LABELS),
              # KEDA's operator reads queue depths there, where a service scales on them (components/keda.py).
              *([_keda(spec)] if spec.queue_scaled else []))),
        Rule("rabbitmq", (rabbitmq_k8s.PROMETHEUS_PORT,), (monitoring,)),
        Rule("redis", (spec.redis.port,), (*apps, Peer(part=redis_k8s.CREATE_PART))),
        Rule("redis", _redis_peer_ports(spec), (Peer(part="redis"),)),
        # The monitoring part's sidecars, only where they run (their exporters reach Redis and take Nginx's log on
        # the pod's loopback, which no policy governs).
        *([Rule("redis", (mc.REDIS_EXPORTER_PORT,), (monitoring,))] if redis_metrics(spec) else []),
        *([Rule("nginx", (mc.MTAIL_PORT,), (monitoring,))] if nginx_metrics(spec) else []),
    ]


def egress_rules(spec: PlatformSpec) -> list[Rule]:
    """Every connection the platform's pods open, and nothing else: names through the cluster DNS, the parts they
    use, and the API server for the operators' pods (CloudNativePG's instance manager in every instance, job and
    pooler pod reports to it; RabbitMQ's peer discovery reads it). The data tier keeps its own traffic
    (replication, the Erlang distribution, the Redis cluster bus)."""
    gateway, pg, mq, rd = spec.gateway, spec.postgres, spec.rabbitmq, spec.redis
    database = (Peer(part="postgres"), Peer(part="postgres-pooler"))

    def app(part: str, database_client: bool) -> list[Rule]:
        rules = [Rule(part, (mq.port,), (Peer(part="rabbitmq"),)), Rule(part, (rd.port,), (Peer(part="redis"),))]
        if database_client:
            rules.insert(0, Rule(part, (pg.port,), database))
        return rules

    parts = ["nginx", *(w.name for w in spec.workloads), "postgres", "postgres-pooler", "rabbitmq", "redis"]
    if rd.mode == "cluster":
        parts.append(redis_k8s.CREATE_PART)
    dns = _dns(spec)
    api = _api_server(spec)
    return [
        *(Rule(part, (DNS_PORT,), (dns,), ("UDP", "TCP")) for part in parts),
        Rule("nginx", (gateway.port,), (Peer(part=gateway.name),)),
        *app(gateway.name, gateway.database_client),
        *(Rule(gateway.name, (s.port,), (Peer(part=s.name),)) for s in spec.services),
        *(r for s in spec.services for r in app(s.name, s.database_client)),
        Rule("postgres", _postgres_ports(spec), (Peer(part="postgres"),)),
        Rule("postgres", API_SERVER_PORTS, (api,)),
        # Backups: the Barman Cloud plugin's sidecar in every instance pod writes to the object store.
        *([Rule("postgres", postgres_backup_k8s.object_store_ports(pg),
                (Peer(cidrs=pg.backup.object_store_cidrs or ANY_ADDRESS),))]
          if pg.backup is not None else []),
        Rule("postgres-pooler", (pg.port,), (Peer(part="postgres"),)),
        Rule("postgres-pooler", API_SERVER_PORTS, (api,)),
        Rule("rabbitmq", _rabbitmq_peer_ports(spec), (Peer(part="rabbitmq"),)),
        Rule("rabbitmq", API_SERVER_PORTS, (api,)),
        Rule("redis", _redis_peer_ports(spec), (Peer(part="redis"),)),
        *([Rule(redis_k8s.CREATE_PART, (rd.port,), (Peer(part="redis"),))] if rd.mode == "cluster" else []),
    ]


def _ports(rule: Rule) -> list[k8s.networking.v1.NetworkPolicyPortArgs]:
    ports = []
    for protocol in rule.protocols:
        for port in rule.ports:
            if isinstance(port, tuple):
                ports.append(k8s.networking.v1.NetworkPolicyPortArgs(port=port[0], end_port=port[1],
                                                                     protocol=protocol))
            else:
                ports.append(k8s.networking.v1.NetworkPolicyPortArgs(port=port, protocol=protocol))
    return ports


def pod_selector(part: str, spec: PlatformSpec, target: KubernetesTarget, *, as_source: bool) -> dict[str, str]:
    """The labels a part's pods are sure to carry. CloudNativePG labels its own pods: the database
    instances by cluster and role (as a source also its setup jobs and the pooler's pods, which carry the
    cluster's label too), the pooler by pooler name."""
    if part == "postgres":
        pg = spec.postgres
        return postgres_k8s.cluster_member_selector(pg) if as_source else postgres_k8s.instance_pod_selector(pg)
    if part == "postgres-pooler":
        return postgres_k8s.pooler_pod_selector(spec.postgres)
    return target.selector(part)


def _peer(peer: Peer, spec: PlatformSpec, target: KubernetesTarget,
          *, as_source: bool) -> list[k8s.networking.v1.NetworkPolicyPeerArgs]:
    if peer.cidrs:
        return [k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=cidr))
                for cidr in peer.cidrs]
    if peer.namespace is not None:
        # Both selectors in one peer: pods with these labels in that namespace, not anything in it.
        return [k8s.networking.v1.NetworkPolicyPeerArgs(
            namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                match_labels={"kubernetes.io/metadata.name": peer.namespace}),
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(peer.labels)),
        )]
    assert peer.part is not None
    return [k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs(
        match_labels=pod_selector(peer.part, spec, target, as_source=as_source)))]


def _peers(rule: Rule, spec: PlatformSpec, target: KubernetesTarget,
           *, as_source: bool) -> list[k8s.networking.v1.NetworkPolicyPeerArgs] | None:
    """No peers at all admit every address; otherwise only the listed ones."""
    if any(p.anywhere for p in rule.peers):
        return None
    return [args for p in rule.peers for args in _peer(p, spec, target, as_source=as_source)]


def _by_part(rules: list[Rule]) -> dict[str, list[Rule]]:
    by_part: dict[str, list[Rule]] = {}
    for rule in rules:
        by_part.setdefault(rule.part, []).append(rule)
    return dict(sorted(by_part.items()))


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
    for part, rules in _by_part(ingress_rules(spec)).items():
        policies.append(k8s.networking.v1.NetworkPolicy(
            f"{name}-allow-{part}",
            metadata=target.metadata(f"allow-{part}", "network-policy"),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(
                    match_labels=pod_selector(part, spec, target, as_source=False)),
                policy_types=["Ingress"],
                ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=_ports(rule), from_=_peers(rule, spec, target, as_source=True)) for rule in rules],
            ),
            opts=target.opts(parent),
        ))
    egress: list[k8s.networking.v1.NetworkPolicy] = []
    for part, rules in _by_part(egress_rules(spec)).items():
        egress.append(k8s.networking.v1.NetworkPolicy(
            f"{name}-allow-{part}-egress",
            metadata=target.metadata(f"allow-{part}-egress", "network-policy"),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                # The pods that open the connections: for PostgreSQL also the operator's jobs.
                pod_selector=k8s.meta.v1.LabelSelectorArgs(
                    match_labels=pod_selector(part, spec, target, as_source=True)),
                policy_types=["Egress"],
                egress=[k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                    ports=_ports(rule), to=_peers(rule, spec, target, as_source=False)) for rule in rules],
            ),
            opts=target.opts(parent),
        ))
    # Denying egress only once every allowance exists: running pods never lose DNS or their stores in between.
    policies += [*egress, k8s.networking.v1.NetworkPolicy(
        f"{name}-default-deny-egress",
        metadata=target.metadata("default-deny-egress", "network-policy"),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(), policy_types=["Egress"], egress=[]),
        opts=target.opts(parent, depends_on=egress),
    )]
    return policies
