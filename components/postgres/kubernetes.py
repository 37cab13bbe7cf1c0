"""PostgreSQL on Kubernetes through CloudNativePG: the operator's Helm release, a Cluster, a PgBouncer Pooler.

CloudNativePG owns what the Docker target builds by hand: streaming replicas and their slots, failover,
the `-rw` / `-ro` / `-r` Services, TLS between instances, and a PodDisruptionBudget for the primary and
one for the replicas (`enablePDB`). This module decides only what the spec decides.

Images: CloudNativePG runs its own operand images (its instance manager is injected, the official
image's entrypoint is not used, and the image must carry the tools the operator calls). The spec names
the official image (`postgres:16.9-alpine`); its `major.minor` picks the CloudNativePG image of the same
server, `ghcr.io/cloudnative-pg/postgresql:<major.minor>-standard-bookworm` (for the minors of the operator's
signed image catalog, model/pins.py, that catalog's immutable build and digest): the "standard" flavour (no
Barman Cloud, which is leaving the operator for a plugin; locales, pgaudit and pgvector included) on one
fixed Debian release, so that a minor update never changes the C library and with it the collation order
of existing indexes. Any other repository in `postgres.image` is taken to be a CloudNativePG operand image
chosen on purpose and is used as given (digest included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import k8s_common as kc
from components.postgres import backup_kubernetes as backup_k8s
from components.postgres.config import slot_wal_cap_mib
from components.seam import Built
from components.secrets import PostgresPasswords
from components.target import KubernetesTarget
from model import capacity, pins
from model.images import parse_image
from model.spec import ConnectionBudget, PostgresSpec, Resources, ResourceSpec

# The operator: the project's own chart, pinned in model/pins.py (chart 0.29.0 ships operator 1.30.0, appVersion in
# the chart repository's index.yaml), the line of the CRDs the tests validate against.
OPERATOR_NAMESPACE = "cnpg-system"
OPERATOR_RELEASE = "cnpg"
CHART = "cloudnative-pg"
CHART_REPO = "https://cloudnative-pg.github.io/charts"
CHART_VERSION = pins.CNPG_CHART_VERSION
OPERATOR_VERSION = pins.CNPG_OPERATOR_VERSION

API_VERSION = "postgresql.cnpg.io/v1"
OPERAND_REPOSITORY = "ghcr.io/cloudnative-pg/postgresql"
OPERAND_VARIANT = "standard-bookworm"

# Labels the operator itself puts on the pods it creates and selects them by: they cannot drift.
CLUSTER_LABEL = "cnpg.io/cluster"
POD_ROLE_LABEL = "cnpg.io/podRole"
POOLER_LABEL = "cnpg.io/poolerName"
METRICS_PORT = 9187          # instance pods: the instance manager's Prometheus exporter
STATUS_PORT = 8000           # instance pods: the instance manager's status API, called by the operator
POOLER_METRICS_PORT = 9127   # pooler pods: PgBouncer's exporter

# The guide's own remedy for exhausted connections is max_connections = 200: what a server is asked to
# hold directly. A budget that needs more than that gets PgBouncer in front of the primary.
DIRECT_MAX_CONNECTIONS = 200
# Two PgBouncers: one can be drained or rescheduled while the other carries every client (one
# PgBouncer process serves thousands of client connections; it is single-threaded, hence one core).
POOLER_INSTANCES = 2
POOLER_RESOURCES = ResourceSpec(limits=Resources(cpu_millis=1000, memory_mib=256),
                                requests=Resources(cpu_millis=100, memory_mib=128))
# Clients reconnecting after a pooler restart briefly hold old and new connections.
CLIENT_CONN_HEADROOM = Fraction(5, 4)
# Protocol-level prepared statements survive transaction pooling (PgBouncer 1.21+) up to this many per
# server connection.
MAX_PREPARED_STATEMENTS = 200

# `pulumi up` waits for the Cluster's Ready condition (CloudNativePG's ConditionClusterReady, "Ready"), so an `up`
# whose volumes never bind or whose operand image never pulls fails instead of reporting success; the apps, which
# wait on the Cluster, start against a database that answers.
WAIT_FOR = "condition=Ready"
# Sized for a first seed: the operator creates the instances one after another, and each waits for its volume to
# be provisioned and bound, its node to pull the operand image (a few hundred MB on a cold node) and a Job
# (initdb for the primary, a pg_basebackup of the still empty primary for each replica) before its pod starts.
# Five minutes an instance covers slow provisioners and cold pulls; pulumi-kubernetes' default of 10 minutes for
# the whole Cluster would fail a healthy first `up` of the large tier (4 instances). A replica added later to a
# large database copies all of it and may outlast the wait: the operator carries on, and the next `up` finishes.
READY_S_PER_INSTANCE = 300
READY_MIN_S = 600


def ready_timeout_s(spec: PostgresSpec) -> int:
    return max(READY_MIN_S, (1 + spec.replicas) * READY_S_PER_INSTANCE)


def cluster_annotations(spec: PostgresSpec) -> dict[str, str]:
    """pulumi-kubernetes' await annotations (metadata.ReadyCondition, metadata.TimeoutDuration)."""
    return {"pulumi.com/timeoutSeconds": str(ready_timeout_s(spec)), "pulumi.com/waitFor": WAIT_FOR}


@dataclass(frozen=True)
class PoolerSizing:
    """One PgBouncer's limits. Server connections of all poolers stay under the budget's share of
    max_connections; every client connection of the budget fits on one pooler (the other may be down)."""

    instances: int
    max_client_conn: int
    default_pool_size: int
    reserve_pool_size: int

    @property
    def server_connections_per_instance(self) -> int:
        return self.default_pool_size + self.reserve_pool_size

    @property
    def server_connections(self) -> int:
        return self.instances * self.server_connections_per_instance


@dataclass(frozen=True)
class Names:
    """Kubernetes object names; they are DNS names too and never change with the tier."""

    cluster: str
    pooler: str
    app_secret: str
    rw_service: str
    ro_service: str


def names(spec: PostgresSpec) -> Names:
    return Names(cluster=spec.name, pooler=f"{spec.name}-pooler", app_secret=f"{spec.name}-app-credentials",
                 rw_service=f"{spec.name}-rw", ro_service=f"{spec.name}-ro")


def instance_pod_selector(spec: PostgresSpec) -> dict[str, str]:
    """The PostgreSQL instance pods, by labels the operator sets and selects by itself (its Services and
    budgets do). Prefer these to app.kubernetes.io/* for NetworkPolicies: the operator documents those
    as its own (name "postgresql", instance = the Cluster's name) and only inheritedMetadata overrides them."""
    return {CLUSTER_LABEL: spec.name, POD_ROLE_LABEL: "instance"}


def cluster_member_selector(spec: PostgresSpec) -> dict[str, str]:
    """Every pod the operator runs for the cluster: instances, their initdb/join Jobs (a joining replica
    copies the primary) and the pooler's pods."""
    return {CLUSTER_LABEL: spec.name}


def pooler_pod_selector(spec: PostgresSpec) -> dict[str, str]:
    """The pooler's pods: the label its Deployment selects them by."""
    return {POOLER_LABEL: names(spec).pooler}


def operand_image(spec: PostgresSpec) -> str:
    """The CloudNativePG image for the server `spec.image` names (see the module docstring)."""
    ref = parse_image(spec.image)
    numbers = ref.version() or ()
    if numbers and numbers[0] != spec.version:
        raise ValueError(f"postgres.image {spec.image!r} is PostgreSQL {numbers[0]}, "
                         f"but postgres.version is {spec.version}")
    if not ref.is_docker_official("postgres"):
        return spec.image
    if len(numbers) < 2:
        raise ValueError(f"postgres.image {spec.image!r}: the tag must start with major.minor "
                         "(e.g. 16.9-alpine) to pick the matching CloudNativePG image")
    # A server the operand catalog lists (model/pins.py): its immutable build, by digest; any other minor: the
    # moving major.minor tag of the same flavour.
    pinned = pins.CNPG_OPERANDS.get((numbers[0], numbers[1]))
    if pinned is not None and pinned.repository == OPERAND_REPOSITORY and pinned.tag.endswith(OPERAND_VARIANT):
        return pinned.ref
    return f"{OPERAND_REPOSITORY}:{numbers[0]}.{numbers[1]}-{OPERAND_VARIANT}"


def postgresql_parameters(spec: PostgresSpec) -> dict[str, str]:
    """postgresql.conf settings from the spec (CloudNativePG takes strings only). Ports, sockets,
    wal_level, hot_standby, archiving, logging destinations and TLS are the operator's own and are
    rejected by its webhook; everything here is outside that list."""
    return {
        "max_connections": str(spec.max_connections),
        "shared_buffers": f"{spec.shared_buffers_mib}MB",
        "effective_cache_size": f"{spec.effective_cache_size_mib}MB",
        "work_mem": f"{spec.work_mem_kib}kB",
        "maintenance_work_mem": f"{spec.maintenance_work_mem_mib}MB",
        "max_wal_senders": str(spec.max_wal_senders),
        # The operator keeps one slot per standby on every instance (replicationSlots.highAvailability).
        "max_replication_slots": str(spec.max_replication_slots),
        "max_slot_wal_keep_size": f"{slot_wal_cap_mib(spec)}MB",
        # Replicas serve reads: without feedback the primary's vacuum cancels their long queries.
        "hot_standby_feedback": "on",
        "password_encryption": "scram-sha-256",
        "log_min_duration_statement": "1000",
        "log_checkpoints": "on",
        "log_lock_waits": "on",
        "log_temp_files": "10240",
    }


def pooler_sizing(spec: PostgresSpec, budget: ConnectionBudget) -> PoolerSizing | None:
    """PgBouncer in front of the primary when the budget's clients would need a server larger than the
    guide's max_connections 200 (None: clients connect directly)."""
    if capacity.required_max_connections(budget.total, budget.limit_percent) <= DIRECT_MAX_CONNECTIONS:
        return None
    # Strictly under limit_percent of max_connections, as the budget itself is checked.
    server_budget = math.ceil(Fraction(spec.max_connections * budget.limit_percent, 100)) - 1
    per_instance = server_budget // POOLER_INSTANCES
    if per_instance < 2:
        raise ValueError(f"postgres.max_connections {spec.max_connections} leaves {per_instance} server "
                         f"connections per pooler; it needs at least 2")
    reserve = max(1, per_instance // 20)
    return PoolerSizing(
        instances=POOLER_INSTANCES,
        max_client_conn=max(100, math.ceil(budget.total * CLIENT_CONN_HEADROOM)),
        default_pool_size=per_instance - reserve,
        reserve_pool_size=reserve,
    )


def pod_labels(target: KubernetesTarget, part: str, component: str) -> dict[str, str]:
    """Labels for pods the operator creates: the part's selector, without claiming Pulumi manages them."""
    return {**target.selector(part), "app.kubernetes.io/part-of": target.spec.project,
            "app.kubernetes.io/component": component}


def cluster_spec(spec: PostgresSpec, target: KubernetesTarget) -> dict[str, Any]:
    n = names(spec)
    storage: dict[str, Any] = {"size": f"{spec.storage_gib}Gi", "resizeInUseVolumes": True}
    if target.spec.kubernetes.storage_class:
        storage["storageClass"] = target.spec.kubernetes.storage_class
    return _with_backups(spec, n, {
        "description": f"{target.spec.project} PostgreSQL, stack {target.spec.stack}",
        # One primary and `replicas` hot standbys; the operator promotes a standby when the primary fails
        # and scales instances in place.
        "instances": 1 + spec.replicas,
        "imageName": operand_image(spec),
        "imagePullPolicy": "IfNotPresent",
        "postgresql": {"parameters": postgresql_parameters(spec)},
        "bootstrap": {
            "initdb": {
                "database": spec.database,
                "owner": spec.user,
                "secret": {"name": n.app_secret},
                "dataChecksums": True,
                "encoding": "UTF8",
            },
        },
        # The operator works through the local socket; nobody needs the superuser over the network.
        "enableSuperuserAccess": False,
        "storage": storage,
        "resources": kc.resources_dict(spec.resources),
        # Every object the operator makes for the cluster (pods, PVCs, Services, Jobs) carries these;
        # on pods they override the operator's own app.kubernetes.io/name and /instance.
        "inheritedMetadata": {"labels": pod_labels(target, spec.name, "database")},
        # Instances on different nodes where the cluster has them, without leaving a small cluster
        # unschedulable; and across zones, best effort.
        "affinity": {
            "enablePodAntiAffinity": True,
            "podAntiAffinityType": "preferred",
            "topologyKey": "kubernetes.io/hostname",
        },
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": instance_pod_selector(spec)},
        }],
        # The operator's own PodDisruptionBudgets: a drain cannot evict the primary, and evicts standbys
        # one at a time.
        "enablePDB": True,
        "primaryUpdateStrategy": "unsupervised",
        "replicationSlots": {"highAvailability": {"enabled": True}},
    })


def _with_backups(spec: PostgresSpec, n: Names, cluster: dict[str, Any]) -> dict[str, Any]:
    """The Barman Cloud plugin as WAL archiver, and a recovery bootstrap instead of initdb to restore."""
    if spec.backup is None:
        return cluster
    cluster = {**cluster, "plugins": backup_k8s.plugins(spec)}
    if spec.restore is not None:
        bootstrap, external = backup_k8s.recovery_bootstrap(spec, n.app_secret)
        cluster |= {"bootstrap": bootstrap, "externalClusters": external}
    return cluster


def pooler_spec(spec: PostgresSpec, sizing: PoolerSizing, target: KubernetesTarget) -> dict[str, Any]:
    n = names(spec)
    per_instance = str(sizing.server_connections_per_instance)
    return {
        "cluster": {"name": n.cluster},
        "instances": sizing.instances,
        "type": "rw",
        "pgbouncer": {
            # A server connection is held for one transaction, not for a client's lifetime: that is what
            # lets the clients' pools (HPA max x pool max) share far fewer backends.
            "poolMode": "transaction",
            "parameters": {
                "max_client_conn": str(sizing.max_client_conn),
                "default_pool_size": str(sizing.default_pool_size),
                "reserve_pool_size": str(sizing.reserve_pool_size),
                # Hard caps whatever the pools do: this pooler's share of the server budget.
                "max_db_connections": per_instance,
                "max_user_connections": per_instance,
                "max_prepared_statements": str(MAX_PREPARED_STATEMENTS),
            },
        },
        "template": {
            # The part's selector, as on every pod of the platform; the operator adds its own labels to the
            # template and, per its documentation, app.kubernetes.io/name "postgresql" on every pod it runs:
            # select pooler pods by pooler_pod_selector() where it must hold.
            "metadata": {"labels": pod_labels(target, n.pooler, "pooler")},
            "spec": {
                # Merged by name into the operator's container: only the resources are ours.
                "containers": [{"name": "pgbouncer", "resources": kc.resources_dict(POOLER_RESOURCES)}],
                "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": pooler_pod_selector(spec)},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }]}},
            },
        },
    }


def build(parent: pulumi.Resource, name: str, spec: PostgresSpec, *, passwords: PostgresPasswords,
          target: KubernetesTarget) -> Built:
    n = names(spec)
    operator: list[pulumi.Resource] = []
    if target.spec.kubernetes.install_operators:
        operator.append(k8s.helm.v3.Release(
            f"{name}-operator",
            name=OPERATOR_RELEASE,
            chart=CHART,
            version=CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
            namespace=OPERATOR_NAMESPACE,
            create_namespace=True,
            values={"crds": {"create": True}},
            # The operator's webhooks must answer before the Cluster is submitted.
            skip_await=False,
            # Uninstalling the chart would take its CRDs, and every Cluster with them: a release dropped
            # from the program (install_operators turned off) stays installed.
            opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=True, protect=target.spec.protect),
        ))
        kc.restricted_operator_namespace(f"{name}-operator-namespace", OPERATOR_NAMESPACE, parent=parent,
                                         release=operator[0])

    store = _object_store(parent, name, spec, target, operator) if spec.backup is not None else []
    # CloudNativePG reads the owner's password from a basic-auth Secret at bootstrap.
    app_secret = kc.secret(f"{name}-app-credentials", target=target, part=spec.name, parent=parent,
                           object_name=n.app_secret, secret_type="kubernetes.io/basic-auth",
                           data={"username": spec.user, "password": passwords.app})
    cluster = k8s.apiextensions.CustomResource(
        f"{name}-cluster",
        api_version=API_VERSION,
        kind="Cluster",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=n.cluster, namespace=target.namespace_name,
                                            labels=target.labels(spec.name, "database"),
                                            annotations=cluster_annotations(spec)),
        spec=cluster_spec(spec, target),
        opts=target.opts(parent, stateful=True, depends_on=[*operator, app_secret, *store]),
    )
    resources: list[pulumi.Resource] = [cluster]
    primary_host = n.rw_service
    if spec.backup is not None:
        _build_backups(parent, name, spec, target, operator, cluster, store)

    sizing = pooler_sizing(spec, target.spec.budget)
    if sizing is not None:
        pooler = k8s.apiextensions.CustomResource(
            f"{name}-pooler",
            api_version=API_VERSION,
            kind="Pooler",
            metadata=target.metadata(n.pooler, n.pooler, "pooler"),
            spec=pooler_spec(spec, sizing, target),
            opts=target.opts(parent, depends_on=[*operator, cluster]),
        )
        # The operator makes no budget for poolers. This one selects by the operator's own pod label.
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pooler-pdb",
            metadata=target.metadata(n.pooler, n.pooler, "pooler"),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                unhealthy_pod_eviction_policy="AlwaysAllow",
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=pooler_pod_selector(spec)),
            ),
            opts=target.opts(parent, depends_on=[pooler]),
        )
        resources.append(pooler)
        primary_host = n.pooler

    # Without standbys `-ro` has no endpoints; reads then go to the primary (the contract's fallback).
    replica_hosts = [n.ro_service] if spec.replicas else []
    return Built(hosts=[primary_host, *replica_hosts], port=spec.port, wait_on=resources)


def _object_store(parent: pulumi.Resource, name: str, spec: PostgresSpec, target: KubernetesTarget,
                  operator: list[pulumi.Resource]) -> list[pulumi.Resource]:
    """The plugin (where the stack installs operators), its credentials and the ObjectStore: before the Cluster,
    whose archiving and recovery bootstrap name the store."""
    backup = spec.backup
    assert backup is not None
    made: list[pulumi.Resource] = []
    if target.spec.kubernetes.install_operators:
        made.append(k8s.helm.v3.Release(
            f"{name}-backup-plugin",
            name=backup_k8s.PLUGIN_RELEASE,
            chart=backup_k8s.PLUGIN_CHART,
            version=backup_k8s.PLUGIN_CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
            # The plugin must run in the operator's namespace (its documentation), where the operator finds it.
            namespace=OPERATOR_NAMESPACE,
            values={"crds": {"create": True}},
            skip_await=False,
            # Like the operator's: its CRD holds every ObjectStore; dropping the release keeps it installed.
            opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=True, protect=target.spec.protect,
                                        depends_on=operator),
        ))
    if backup.access_key_id is not None and backup.secret_access_key is not None:
        made.append(kc.secret(f"{name}-backup-credentials", target=target, part=spec.name, parent=parent,
                              object_name=backup_k8s.credentials_secret_name(spec),
                              data={backup_k8s.S3_KEY_ID: backup.access_key_id,
                                    backup_k8s.S3_SECRET_KEY: backup.secret_access_key}))
    made.append(k8s.apiextensions.CustomResource(
        f"{name}-object-store",
        api_version=backup_k8s.OBJECT_STORE_API,
        kind="ObjectStore",
        metadata=target.metadata(backup_k8s.object_store_name(spec), spec.name, "backup"),
        spec=backup_k8s.object_store_spec(spec),
        opts=target.opts(parent, depends_on=list(made)),
    ))
    return made


def _build_backups(parent: pulumi.Resource, name: str, spec: PostgresSpec, target: KubernetesTarget,
                   operator: list[pulumi.Resource], cluster: pulumi.Resource, store: list[pulumi.Resource]) -> None:
    k8s.apiextensions.CustomResource(
        f"{name}-scheduled-backup",
        api_version=API_VERSION,
        kind="ScheduledBackup",
        metadata=target.metadata(backup_k8s.scheduled_backup_name(spec), spec.name, "backup"),
        spec=backup_k8s.scheduled_backup_spec(spec),
        opts=target.opts(parent, depends_on=[*operator, *store, cluster]),
    )
