"""Kubernetes preflight rules: what the stack's namespace already runs that this stack's next `up` could not move to.

Pure: the resolved spec and a snapshot of the live objects in, problems out (infra/preflight.py reads the cluster
the provider deploys to). What the operators and Redis cannot do is refused before any resource is registered, so
an update is never half-applied:

- fewer RabbitMQ nodes than run now: the RabbitMQ Cluster Operator refuses every scale-down (ReconcileSuccess
  False, reason UnsupportedOperation) and then applies none of the update's other changes;
- a smaller RabbitMQ or PostgreSQL volume than the live one: neither operator shrinks a volume;
- a Redis mode change (standalone <-> cluster) or fewer Redis Cluster nodes: the StatefulSet (Parallel) would
  remove several nodes that still hold hash slots at once, and `--cluster create` refuses nodes that hold keys.

Growth is allowed: the RabbitMQ operator adds nodes that join at boot; CloudNativePG seeds new replicas; a Redis
Cluster's new nodes start empty and the creation Job brings them in (a warning at preview says so, with the
add-node commands for a Job that stops instead). Each message names the key, the old and new values and the
procedure, which the README's "Safe transitions on Kubernetes" section spells out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from model.errors import ConfigProblem
from model.preflight import Findings, count_key
from model.spec import PlatformSpec
from model.thresholds import nginx_metrics, redis_metrics
from model.tiers import TIERS

# The annotation the stack writes on the Redis StatefulSet (components/redis/kubernetes.py): the mode the nodes
# were deployed in, which a hand-made `kubectl scale` does not change.
REDIS_MODE_ANNOTATION = "banyan/redis-mode"
# The port name a cluster-mode node exposes for the cluster bus: the mode of a StatefulSet made before the
# annotation existed.
REDIS_BUS_PORT_NAME = "cluster-bus"
# The monitoring part's sidecars (components/monitoring/kubernetes.py): the Redis exporter in every Redis pod, mtail
# in every Nginx pod. Whether the live Redis pods carry the exporter tells a preview that they are about to roll.
REDIS_EXPORTER_CONTAINER = "redis-exporter"
MTAIL_CONTAINER = "mtail"
# The RabbitMQ Cluster Operator's names: the label that pauses its reconciliation, its StatefulSet's claim.
RABBITMQ_PAUSE_LABEL = "rabbitmq.com/pauseReconciliation"
RABBITMQ_CLAIM = "persistence"
README_SECTION = 'README, "Safe transitions on Kubernetes"'
GIB = 2**30

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_FACTORS = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
            "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def quantity_bytes(text: object) -> int:
    """A storage quantity (`5Gi`, `500M`, `1073741824`) in bytes; ValueError for anything else."""
    match = _QUANTITY.match(str(text).strip())
    if match is None:
        raise ValueError(f"not a storage quantity: {text!r}")
    return int(Fraction(match[1]) * _FACTORS[match[2]])


def _gib(n_bytes: int) -> str:
    value = Fraction(n_bytes, GIB)
    return f"{value.numerator}Gi" if value.denominator == 1 else f"{float(value):.2f}Gi"


# ---- the snapshot ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LiveRabbitMQ:
    """The RabbitmqCluster and the StatefulSet its operator runs."""

    name: str
    replicas: int
    # `spec.persistence.storage` in bytes (0: no volume), None when it is not a quantity.
    storage_bytes: int | None = None
    # The operator's StatefulSet `<name>-server`: its replicas run now, even where the RabbitmqCluster was
    # lowered by hand. None when it does not exist (the operator has not reconciled yet).
    statefulset: str | None = None
    statefulset_replicas: int | None = None
    # The operator's ReconcileSuccess condition when it is False: "reason: message".
    reconcile_failure: str | None = None
    # The StatefulSet's volume claim templates (a pod's claim is `<template>-<pod>`); the operator's own
    # name when its StatefulSet does not exist yet.
    claims: tuple[str, ...] = (RABBITMQ_CLAIM,)

    @property
    def nodes(self) -> int:
        return max(self.replicas, self.statefulset_replicas or 0)


@dataclass(frozen=True)
class LiveRedis:
    """The Redis StatefulSet."""

    statefulset: str
    replicas: int
    mode: Literal["standalone", "cluster"]
    # Its volume claim templates (a pod's claim is `<template>-<pod>`).
    claims: tuple[str, ...] = ()
    # Whether its pods carry the monitoring part's Redis exporter.
    exporter: bool = False


@dataclass(frozen=True)
class LivePostgres:
    """The CloudNativePG Cluster."""

    name: str
    instances: int
    storage_bytes: int | None = None
    # The server name in the object store its recovery bootstrap restored from; None: bootstrapped by initdb.
    restored_from: str | None = None


@dataclass(frozen=True)
class KubernetesSnapshot:
    """This stack's stateful objects in its namespace; None where the object does not exist."""

    namespace: str
    rabbitmq: LiveRabbitMQ | None = None
    redis: LiveRedis | None = None
    postgres: LivePostgres | None = None

    @classmethod
    def from_objects(cls, namespace: str, *, rabbitmq_cluster: Mapping[str, Any] | None = None,
                     rabbitmq_statefulset: Mapping[str, Any] | None = None,
                     redis_statefulset: Mapping[str, Any] | None = None,
                     postgres_cluster: Mapping[str, Any] | None = None) -> KubernetesSnapshot:
        """From the API server's JSON of each object (a GET's body). Raises ValueError for an object that is
        not in the form these kinds have."""
        try:
            rabbitmq = None if rabbitmq_cluster is None else _rabbitmq(rabbitmq_cluster, rabbitmq_statefulset)
            redis = None if redis_statefulset is None else _redis(redis_statefulset)
            postgres = None if postgres_cluster is None else _postgres(postgres_cluster)
        except (AttributeError, KeyError, TypeError) as exc:
            raise ValueError(f"an object is not in the expected form ({exc!r})") from exc
        return cls(namespace, rabbitmq, redis, postgres)


def _replicas(obj: Mapping[str, Any], field: str = "replicas") -> int:
    value = (obj.get("spec") or {}).get(field, 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{obj['metadata']['name']}: spec.{field} is {value!r}, not a count")
    return value


def _storage(raw: object) -> int | None:
    if raw is None:
        return None
    try:
        return quantity_bytes(raw)
    except ValueError:
        return None


def _rabbitmq(cluster: Mapping[str, Any], statefulset: Mapping[str, Any] | None) -> LiveRabbitMQ:
    spec = cluster.get("spec") or {}
    persistence = spec.get("persistence") or {}
    failure = None
    for condition in (cluster.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReconcileSuccess" and str(condition.get("status")) == "False":
            failure = f"{condition.get('reason', '')}: {condition.get('message', '')}".strip(": ")
    return LiveRabbitMQ(
        name=str(cluster["metadata"]["name"]),
        # The CRD's default is 1.
        replicas=_replicas(cluster),
        # The CRD's default is 10Gi.
        storage_bytes=_storage(persistence.get("storage", "10Gi")),
        statefulset=None if statefulset is None else str(statefulset["metadata"]["name"]),
        statefulset_replicas=None if statefulset is None else _replicas(statefulset),
        reconcile_failure=failure,
        claims=(RABBITMQ_CLAIM,) if statefulset is None or not persistence_claims(statefulset)
        else persistence_claims(statefulset),
    )


def persistence_claims(statefulset: Mapping[str, Any]) -> tuple[str, ...]:
    templates = (statefulset.get("spec") or {}).get("volumeClaimTemplates") or []
    return tuple(str(t["metadata"]["name"]) for t in templates)


def _redis(statefulset: Mapping[str, Any]) -> LiveRedis:
    replicas = _replicas(statefulset)
    annotated = ((statefulset.get("metadata") or {}).get("annotations") or {}).get(REDIS_MODE_ANNOTATION)
    if annotated in ("standalone", "cluster"):
        mode: Literal["standalone", "cluster"] = annotated
    else:
        # Made before the annotation: a cluster-mode node exposes the bus port.
        pod = ((statefulset.get("spec") or {}).get("template") or {}).get("spec") or {}
        ports = [p.get("name") for c in pod.get("containers") or [] for p in c.get("ports") or []]
        mode = "cluster" if REDIS_BUS_PORT_NAME in ports or replicas > 1 else "standalone"
    pod = ((statefulset.get("spec") or {}).get("template") or {}).get("spec") or {}
    exporter = any(c.get("name") == REDIS_EXPORTER_CONTAINER for c in pod.get("containers") or [])
    return LiveRedis(str(statefulset["metadata"]["name"]), replicas, mode, persistence_claims(statefulset), exporter)


def _postgres(cluster: Mapping[str, Any]) -> LivePostgres:
    spec = cluster.get("spec") or {}
    storage = (spec.get("storage") or {}).get("size")
    return LivePostgres(str(cluster["metadata"]["name"]), _replicas(cluster, "instances"), _storage(storage),
                        _restored_from(spec))


def _restored_from(spec: Mapping[str, Any]) -> str | None:
    source = ((spec.get("bootstrap") or {}).get("recovery") or {}).get("source")
    if source is None:
        return None
    for external in spec.get("externalClusters") or []:
        if external.get("name") == source:
            return str(((external.get("plugin") or {}).get("parameters") or {}).get("serverName") or source)
    return str(source)


# ---- the rules --------------------------------------------------------------------------------------------------

def check(spec: PlatformSpec, snapshot: KubernetesSnapshot) -> Findings:
    """Every problem (and warning) of deploying `spec` over the live objects `snapshot` describes."""
    problems: list[ConfigProblem] = []
    warnings: list[str] = []
    if snapshot.rabbitmq is not None:
        problems += _rabbitmq_rules(spec, snapshot.namespace, snapshot.rabbitmq, warnings)
    if snapshot.redis is not None:
        problems += _redis_rules(spec, snapshot.namespace, snapshot.redis, warnings)
        warnings += _redis_exporter_roll(spec, snapshot.redis)
    if snapshot.postgres is not None:
        problems += _postgres_rules(spec, snapshot.postgres)
        problems += _postgres_restore(spec, snapshot.namespace, snapshot.postgres)
    return Findings(tuple(problems), tuple(warnings))


def _storage_key(spec: PlatformSpec, part: Literal["postgres", "rabbitmq"]) -> tuple[str, object]:
    size = spec.postgres.storage_gib if part == "postgres" else spec.rabbitmq.storage_gib
    if size == TIERS[spec.tier].storage_gib[part]:
        return "banyan:tier", spec.tier
    return f"banyan:{part}.storage_gib", size


def _from_tier(key: str, spec: PlatformSpec, what: str) -> str:
    return f" (the {spec.tier} tier's {what})" if key == "banyan:tier" else ""


def _rabbitmq_rules(spec: PlatformSpec, namespace: str, live: LiveRabbitMQ,
                    warnings: list[str]) -> list[ConfigProblem]:
    rabbit = spec.rabbitmq
    problems = []
    if live.reconcile_failure and live.nodes <= rabbit.nodes:
        warnings.append(f"RabbitmqCluster {live.name}: the operator reports ReconcileSuccess=False "
                        f"({live.reconcile_failure}); `pulumi up` waits for it to be True")
    if rabbit.nodes < live.nodes:
        key, value = count_key(spec, "rabbitmq")
        problems.append(ConfigProblem(key, value, (
            f"RabbitMQ would shrink from {live.nodes} nodes to {rabbit.nodes}{_from_tier(key, spec, 'count')}: the "
            "RabbitMQ Cluster Operator refuses to scale a RabbitmqCluster down (ReconcileSuccess=False) and then "
            "applies none of the update's other changes, so this is refused. "
            f"Procedure ({README_SECTION}): {rabbitmq_shrink_procedure(namespace, live, rabbit.nodes)}; "
            f"allowed now: {live.nodes} nodes or more (growth is allowed)")))
    want = rabbit.storage_gib * GIB if rabbit.persistence else 0
    if live.storage_bytes is not None and want < live.storage_bytes:
        key, value = (("banyan:rabbitmq.persistence", False) if not rabbit.persistence
                      else _storage_key(spec, "rabbitmq"))
        problems.append(ConfigProblem(key, value, (
            f"RabbitMQ's volumes would shrink from {_gib(live.storage_bytes)} to {_gib(want)} per node"
            f"{_from_tier(key, spec, 'size')}: the operator never shrinks a volume (ReconcileSuccess=False, and the "
            "update's other changes are not applied), so this is refused; allowed now: "
            f"banyan:rabbitmq.storage_gib {live.storage_bytes // GIB} or more (pin it when moving down a tier)")))
    return problems


def rabbitmq_shrink_procedure(namespace: str, live: LiveRabbitMQ, nodes: int) -> str:
    """The operator cannot scale down: pause it, remove the nodes one at a time, last first, then lower the
    RabbitmqCluster to what runs and resume it, so the operator finds nothing to scale."""
    name, sts = live.name, live.statefulset or f"{live.name}-server"
    kubectl = f"kubectl -n {namespace}"
    node = f"rabbit@{sts}-$i.{name}-nodes.{namespace}"
    claims = " ".join(f"{claim}-{sts}-$i" for claim in live.claims)
    steps = [
        f"`{kubectl} label rabbitmqcluster {name} {RABBITMQ_PAUSE_LABEL}=true`",
        f"then for i from {live.nodes - 1} down to {nodes}, one node at a time: "
        f"`{kubectl} exec {sts}-0 -c rabbitmq -- rabbitmq-queues shrink {node}` (its quorum queue members leave "
        f"while a majority is up), `{kubectl} scale statefulset {sts} --replicas=$i`, "
        f"`{kubectl} exec {sts}-0 -c rabbitmq -- rabbitmqctl forget_cluster_node {node}`"
        + (f", `{kubectl} delete pvc {claims}` (a node that comes back must start empty)" if claims else ""),
    ]
    if nodes == 1:
        steps.append(f"with one node left it has paused (pause_minority): `{kubectl} exec {sts}-0 -c rabbitmq -- "
                     "rabbitmqctl stop_app`, then `start_app`")
    steps.append(f"`{kubectl} patch rabbitmqcluster {name} --type merge -p '{{\"spec\":{{\"replicas\":{nodes}}}}}'`, "
                 f"`{kubectl} label rabbitmqcluster {name} {RABBITMQ_PAUSE_LABEL}-`, then `pulumi up`")
    return "; ".join(steps)


def _redis_shape(count: int, mode: str) -> str:
    return f"a {count}-node cluster" if mode == "cluster" else f"{count} node{'s' if count != 1 else ''} (standalone)"


def _redis_rules(spec: PlatformSpec, namespace: str, live: LiveRedis, warnings: list[str]) -> list[ConfigProblem]:
    red = spec.redis
    if live.replicas == 0 or (live.mode == red.mode and live.replicas == red.nodes):
        return []
    kubectl = f"kubectl -n {namespace}"
    key, value = count_key(spec, "redis")
    tier = f" (the {spec.tier} tier)" if key == "banyan:tier" else ""
    change = f"Redis would change from {_redis_shape(live.replicas, live.mode)} to {_redis_shape(red.nodes, red.mode)}"
    if live.mode != red.mode:
        pods = [f"{live.statefulset}-{i}" for i in range(live.replicas)]
        claims = "".join(f", `{kubectl} delete pvc {' '.join(f'{c}-{pod}' for pod in pods)}`" for c in live.claims)
        return [ConfigProblem(key, value, (
            f"{change}{tier}: a live Redis cannot change mode (`redis-cli --cluster create` refuses nodes that hold "
            "keys, after the applications already switched mode), so this is refused. Procedure "
            f"({README_SECTION}): build the new shape beside the old and migrate, or, with the data saved "
            f"elsewhere, delete the StatefulSet and its claims (`{kubectl} delete statefulset {live.statefulset}`"
            f"{claims}), run `pulumi refresh`, then "
            f"`pulumi up` and load the data; allowed now: {_redis_shape(live.replicas, live.mode)}"))]
    if red.nodes < live.replicas:
        leaving = [f"{live.statefulset}-{i}" for i in range(red.nodes, live.replicas)]
        return [ConfigProblem(key, value, (
            f"{change}{tier}: the StatefulSet would remove {', '.join(leaving)} at once while they hold hash slots "
            f"(or are the only replica of a master), so this is refused. Procedure ({README_SECTION}): in a node "
            f"pod (`{kubectl} exec {live.statefulset}-0 -- sh`), move the slots off those nodes with "
            "`redis-cli --cluster reshard`, remove each with `redis-cli --cluster del-node <any node> <its id>`, "
            f"then `{kubectl} scale statefulset {live.statefulset} --replicas={red.nodes}` and `pulumi up`; "
            f"allowed now: {live.replicas} nodes or more"))]
    new = [f"{live.statefulset}-{i}" for i in range(live.replicas, red.nodes)]
    warnings.append(
        f"Redis grows from {live.replicas} to {red.nodes} cluster nodes: {', '.join(new)} start empty, and the "
        f"creation Job (`{kubectl} logs job/{red.cluster_create_name}`) is what brings them into the formed "
        f"cluster ({red.masters} masters x {red.replicas_per_master} replicas, slots and their keys moving onto new "
        "masters); where it stops the `up` instead, the step by hand is: in a node pod "
        f"(`{kubectl} exec {live.statefulset}-0 -- sh`) `redis-cli --cluster add-node <new ip>:{red.port} "
        f"<member ip>:{red.port}` for each new node (with `--cluster-slave` for a replica), then "
        f"`redis-cli --cluster rebalance <member ip>:{red.port} --cluster-use-empty-masters`, and `pulumi up` again")
    return []


def _redis_exporter_roll(spec: PlatformSpec, live: LiveRedis) -> list[str]:
    """Turning the monitoring part on or off adds or removes the Redis exporter sidecar: a new pod template, which
    restarts the running nodes (and Nginx's pods, for mtail), one pod at a time."""
    wanted = redis_metrics(spec)
    if live.replicas == 0 or wanted == live.exporter:
        return []
    change = "adds the Redis exporter sidecar to" if wanted else "removes the Redis exporter sidecar from"
    if wanted:
        nginx = "; the Nginx pods roll too, for mtail" if nginx_metrics(spec) else ""
    else:
        nginx = "; the Nginx pods roll too, where they carry mtail"
    return [f"banyan:monitoring.enabled: this update {change} the Redis pods: StatefulSet {live.statefulset} "
            f"restarts its {live.replicas} node(s) one pod at a time, each once the one before is ready again{nginx}"]


def _postgres_restore(spec: PlatformSpec, namespace: str, live: LivePostgres) -> list[ConfigProblem]:
    """A restore needs a Cluster to bootstrap: CloudNativePG bootstraps once, at creation, so over a live Cluster
    (not itself this restore) the setting would do nothing. Refused, with the procedure."""
    restore = spec.postgres.restore
    if restore is None or live.restored_from == restore.source_server:
        return []
    return [ConfigProblem("banyan:postgres.restore.enabled", True, (
        f"the Cluster {live.name} already exists with its data, and CloudNativePG bootstraps a Cluster only when "
        "it creates it, so the restore would not happen (banyan:postgres.restore.over_existing_data cannot change "
        "that). To restore over it: run the drill first (`python -m tooling.drill <stack>`), then "
        f"`pulumi state unprotect` the Cluster where banyan:protect is true, `kubectl -n {namespace} delete "
        f"cluster {live.name}` (its volumes go with it; the backups stay in the store), `pulumi refresh`, and "
        "`pulumi up` with the restore set"))]


def _postgres_rules(spec: PlatformSpec, live: LivePostgres) -> list[ConfigProblem]:
    want = spec.postgres.storage_gib * GIB
    if live.storage_bytes is None or want >= live.storage_bytes:
        return []
    key, value = _storage_key(spec, "postgres")
    return [ConfigProblem(key, value, (
        f"PostgreSQL's volumes would shrink from {_gib(live.storage_bytes)} to {_gib(want)} per instance"
        f"{_from_tier(key, spec, 'size')}: CloudNativePG refuses to shrink a volume, and the `up` would stop "
        "half-done at the Cluster, so this is refused; allowed now: banyan:postgres.storage_gib "
        f"{live.storage_bytes // GIB} or more (pin it when moving down a tier)"))]
