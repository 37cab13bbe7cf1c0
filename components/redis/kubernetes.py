"""Redis on the Kubernetes target: a StatefulSet of nodes with stable names and volumes, plus a Job that
creates the Redis Cluster once (a standalone server for the small tier)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import k8s_common
from components.monitoring import kubernetes as monitoring_k8s
from components.redis.config import (
    APP_PASSWORD_ENV,
    CLI_AUTH_ENV,
    CONF_DIR,
    CONF_PATH,
    CREATE_PATH,
    DATA_DIR,
    MONITOR_PASSWORD_ENV,
    PASSWORD_ENV,
    START_PATH,
    health_test,
    render_cluster_create_script,
    render_redis_conf,
    render_start_script,
)
from components.seam import Built
from components.secrets import RedisCredentials
from components.target import KubernetesTarget
from model.config import DEFAULT_CLUSTER_DOMAIN
from model.preflight_kubernetes import REDIS_MODE_ANNOTATION
from model.spec import RedisSpec

PART = "redis"
# The creation Job's pods: their own part, so the nodes' Services and budget never select them.
CREATE_PART = "redis-cluster-create"
NODE_COMPONENT = "node"
CREATE_COMPONENT = "cluster-create"
# Announced host names are fully qualified (in banyan:kubernetes.cluster_domain) so they resolve from any
# namespace.

# The official image's redis user and group (docker-library/redis alpine: `addgroup -S -g 1000 redis`,
# `adduser -S -G redis -u 999 redis`). Run as them from the start: the entrypoint then skips its chown and
# user switch, and fsGroup makes the volume writable.
IMAGE_UID = 999
IMAGE_GID = 1000

PASSWORD_KEY = "password"
# The applications' ACL user's password: only the nodes read it (the start script defines the user with it).
APP_PASSWORD_KEY = "app-password"
# The monitoring exporter's ACL user's password (banyan:monitoring.enabled): the nodes define the user with it, the
# exporter sidecar logs in with it.
MONITOR_PASSWORD_KEY = "monitor-password"
START_KEY = "start.sh"
CREATE_KEY = "create-cluster.sh"
# The pod's own name (redis-node-<i>), from the downward API: it picks the node's redis.conf.
POD_NAME_ENV = "POD_NAME"
DATA_VOLUME = "data"
CONFIG_VOLUME = "config"
TMP_VOLUME = "tmp"
# Redis 7 waits up to shutdown-timeout (10 s) for lagging replicas on SIGTERM; the kill comes well after.
TERMINATION_GRACE_S = 30
# A node counts as available 10 s after it answers: a rolling restart gives a restarted replica time to
# reconnect to its master before the next node (possibly that master) goes down.
MIN_READY_S = 10
# The creation Job: one retry for transient trouble (a node slow to come back); the script bounds each run
# (readiness 120 s + settling 60 s + the create), the deadline bounds both runs with their back-off.
JOB_BACKOFF_LIMIT = 1
JOB_DEADLINE_S = 600
# pulumi-kubernetes waits for the Job to complete (10 min by default): past the deadline, so the Job's own
# failure (with its reason) is what `pulumi up` reports.
JOB_TIMEOUT = "15m"
# sh and redis-cli: a few MiB.
CREATE_LIMITS = {"cpu": "500m", "memory": "64Mi"}
CREATE_REQUESTS = {"cpu": "50m", "memory": "32Mi"}
# Annotations on the Job's pod template: what the creation step was last run for.
NODES_ANNOTATION = "banyan/redis-nodes-sha256"


# ---- names and files (pure) --------------------------------------------------------------------------

def service_name(spec: RedisSpec) -> str:
    """The headless Service that governs the StatefulSet; it is also the StatefulSet's own name."""
    return f"{spec.name}-node"


def pod_names(spec: RedisSpec) -> tuple[str, ...]:
    """StatefulSet pods are numbered from 0: redis-node-0 ... redis-node-<nodes-1>."""
    return tuple(f"{service_name(spec)}-{i}" for i in range(spec.nodes))


def hosts(spec: RedisSpec) -> list[str]:
    """The names applications in the namespace use: one per node, stable across restarts."""
    return [f"{pod}.{service_name(spec)}" for pod in pod_names(spec)]


def announced_host(spec: RedisSpec, namespace: str, pod: str, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN) -> str:
    """The name a node announces to clients (MOVED, CLUSTER SLOTS/SHARDS): fully qualified."""
    return f"{pod}.{service_name(spec)}.{namespace}.svc.{cluster_domain}"


def create_job_name(spec: RedisSpec) -> str:
    return f"{spec.name}-cluster-create"


def conf_key(pod: str) -> str:
    return f"{pod}.conf"


def config_files(spec: RedisSpec, namespace: str, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN, *,
                 monitor: bool = False) -> dict[str, str]:
    """Every file the nodes and the Job read, rendered by the same functions as on Docker: a redis.conf per
    node (each announces its own name), the start script (`monitor`: defining the monitoring exporter's user
    too) and, for a cluster, the creation script."""
    files = {conf_key(pod): render_redis_conf(spec, announced_host(spec, namespace, pod, cluster_domain))
             for pod in pod_names(spec)}
    files[START_KEY] = render_start_script(spec, monitor=monitor)
    if spec.mode == "cluster":
        endpoints = [f"{announced_host(spec, namespace, pod, cluster_domain)}:{spec.port}" for pod in pod_names(spec)]
        files[CREATE_KEY] = render_cluster_create_script(spec, endpoints)
    return files


def config_map_name(spec: RedisSpec, files: Mapping[str, str]) -> str:
    """Named after its content: a change makes a new ConfigMap (created before the old one is deleted) and a
    new pod template, which rolls the nodes; nothing is ever replaced under running pods."""
    return f"{spec.name}-config-{_digest(dict(files))[:10]}"


def nodes_digest(spec: RedisSpec, namespace: str) -> str:
    """Everything the nodes are built from. The creation Job's pod template carries it, so any change to the
    nodes (their set, shape, config, image or resources) replaces the Job and runs it again once the
    StatefulSet has rolled out."""
    return _digest({"namespace": namespace, "spec": spec.model_dump(mode="json")})[:16]


def probe_commands(spec: RedisSpec) -> tuple[str, str]:
    """Shell commands for the node's probes, run with REDISCLI_AUTH set: (ready, alive).

    Ready: an authenticated PING answers PONG (the Docker health check). Alive: the server answers at all;
    an error reply counts (LOADING while it reads a large AOF, BUSY during a long script, MASTERDOWN), as a
    restart would not help and would only start the load again. redis-cli prints any reply on stdout, and
    nothing there when it cannot connect.
    """
    return health_test(spec)[1], f"redis-cli -p {spec.port} ping 2>/dev/null | grep -q ."


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ---- objects ------------------------------------------------------------------------------------------

def build(parent: pulumi.Resource, name: str, spec: RedisSpec, *, credentials: RedisCredentials,
          target: KubernetesTarget) -> Built:
    namespace = target.namespace_name
    monitor = credentials.monitor_password is not None
    files = config_files(spec, namespace, target.spec.kubernetes.cluster_domain, monitor=monitor)
    cm_name = config_map_name(spec, files)
    secret_name = f"{spec.name}-auth"
    svc_name = service_name(spec)
    cluster = spec.mode == "cluster"

    secret_data: dict[str, pulumi.Input[str]] = {PASSWORD_KEY: credentials.password,
                                                 APP_PASSWORD_KEY: credentials.app_password}
    if credentials.monitor_password is not None:
        secret_data[MONITOR_PASSWORD_KEY] = credentials.monitor_password
    secret = k8s_common.secret(f"{name}-auth", target=target, part=PART, parent=parent, object_name=secret_name,
                               data=secret_data)
    config = k8s_common.config_map(f"{name}-config", target=target, part=PART, parent=parent,
                                   object_name=cm_name, data=files)
    ports = [k8s_common.Port("redis", spec.port)]
    if cluster:
        ports.append(k8s_common.Port("cluster-bus", spec.bus_port))
    # Headless, and listing pods before they are ready: every node gets its DNS name as soon as it has an
    # address, so peers (and the start script's address refresh) find each other while starting.
    headless = k8s_common.service(f"{name}-node", target=target, part=PART, parent=parent, object_name=svc_name,
                                  ports=ports, headless=True, publish_not_ready=True)

    # Objects are referred to by their (plain) names, ordered by depends_on: a replaced ConfigMap or Secret
    # must never make the engine re-diff, and so possibly replace, the StatefulSet.
    statefulset = k8s.apps.v1.StatefulSet(
        f"{name}-node",
        # The mode the nodes run in, for the preflight of the next `up` (model/preflight_kubernetes.py): it
        # survives a hand-made `kubectl scale`, which the replica count does not.
        metadata=k8s.meta.v1.ObjectMetaArgs(name=svc_name, namespace=target.namespace_name,
                                            labels=target.labels(PART, NODE_COMPONENT),
                                            annotations={REDIS_MODE_ANNOTATION: spec.mode}),
        spec=k8s.apps.v1.StatefulSetSpecArgs(
            # serviceName, selector, podManagementPolicy and volumeClaimTemplates are immutable: none of them
            # depends on the tier (the claim size does, and is ignored after creation; see opts).
            service_name=svc_name,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=target.selector(PART)),
            # Redis nodes have no start order: they start together, as after a full outage, when each one's
            # start script waits for its peers' names. OrderedReady would start redis-node-1 only once
            # redis-node-0 is ready and scale a tier up one node at a time. Rolling updates are one pod at a
            # time either way.
            pod_management_policy="Parallel",
            replicas=spec.nodes,
            min_ready_seconds=MIN_READY_S,
            update_strategy=k8s.apps.v1.StatefulSetUpdateStrategyArgs(type="RollingUpdate"),
            # A node's data and nodes.conf outlive the StatefulSet and a scale-down (the Kubernetes default,
            # spelled out).
            persistent_volume_claim_retention_policy=k8s.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicyArgs(
                when_deleted="Retain", when_scaled="Retain"),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=target.labels(PART, NODE_COMPONENT)),
                spec=_node_pod(spec, target, cm_name, secret_name, monitor=monitor),
            ),
            volume_claim_templates=[k8s.core.v1.PersistentVolumeClaimArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(name=DATA_VOLUME, labels=target.selector(PART)),
                spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                    access_modes=["ReadWriteOnce"],
                    storage_class_name=target.spec.kubernetes.storage_class,
                    resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                        requests={"storage": f"{spec.storage_gib}Gi"}),
                ),
            )],
        ),
        opts=pulumi.ResourceOptions.merge(
            target.opts(parent, stateful=True, depends_on=[secret, config, headless]),
            # Kubernetes refuses any change to volumeClaimTemplates and pulumi-kubernetes would replace the
            # StatefulSet for one: the size a tier change brings applies to no existing claim anyway.
            pulumi.ResourceOptions(ignore_changes=["spec.volumeClaimTemplates"]),
        ),
    )
    if spec.nodes > 1:
        k8s_common.disruption_budget(f"{name}-node", target=target, part=PART, parent=parent, object_name=svc_name)

    if not cluster:
        ready = statefulset.status.apply(lambda _: True)
        return Built(hosts=hosts(spec), port=spec.port, wait_on=[statefulset], ready=ready)

    job = _create_job(parent, name, spec, target, cm_name, secret_name,
                      depends_on=[statefulset, secret, config, headless])
    failed = f"kubectl -n {target.namespace_name} logs job/{create_job_name(spec)}"
    ready = job.status.apply(lambda status: _job_succeeded(status, failed))
    return Built(hosts=hosts(spec), port=spec.port, wait_on=[statefulset, job], ready=ready)


def _pod_security() -> k8s.core.v1.PodSecurityContextArgs:
    # The volume becomes group-writable for the redis group; only when its root is not already.
    return k8s_common.pod_security_context(IMAGE_UID, IMAGE_GID)


def _container_security() -> k8s.core.v1.SecurityContextArgs:
    """The shared restricted context, with a read-only root: Redis writes only to /data (and sh to /tmp)."""
    return k8s_common.restricted_security_context(read_only_root=True)


def _password_env(env: str, secret_name: str, key: str = PASSWORD_KEY) -> k8s.core.v1.EnvVarArgs:
    return k8s.core.v1.EnvVarArgs(name=env, value_from=k8s.core.v1.EnvVarSourceArgs(
        secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=secret_name, key=key)))


def _shell(command: str) -> k8s.core.v1.ExecActionArgs:
    return k8s.core.v1.ExecActionArgs(command=["/bin/sh", "-c", command])


def _node_pod(spec: RedisSpec, target: KubernetesTarget, cm_name: str, secret_name: str, *,
              monitor: bool) -> k8s.core.v1.PodSpecArgs:
    env = {
        POD_NAME_ENV: k8s.core.v1.EnvVarArgs(name=POD_NAME_ENV, value_from=k8s.core.v1.EnvVarSourceArgs(
            field_ref=k8s.core.v1.ObjectFieldSelectorArgs(field_path="metadata.name"))),
        # start.sh hands the passwords (the administrator's, the applications' user's) to redis-server on stdin;
        # redis-cli (the probes) reads REDISCLI_AUTH.
        PASSWORD_ENV: _password_env(PASSWORD_ENV, secret_name),
        CLI_AUTH_ENV: _password_env(CLI_AUTH_ENV, secret_name),
        APP_PASSWORD_ENV: _password_env(APP_PASSWORD_ENV, secret_name, APP_PASSWORD_KEY),
    }
    if monitor:
        # The monitoring exporter's user, which start.sh defines like the applications'.
        env[MONITOR_PASSWORD_ENV] = _password_env(MONITOR_PASSWORD_ENV, secret_name, MONITOR_PASSWORD_KEY)
    ports = [k8s.core.v1.ContainerPortArgs(name="redis", container_port=spec.port, protocol="TCP")]
    if spec.mode == "cluster":
        ports.append(k8s.core.v1.ContainerPortArgs(name="cluster-bus", container_port=spec.bus_port,
                                                   protocol="TCP"))
    ready, alive = (_shell(command) for command in probe_commands(spec))
    return k8s.core.v1.PodSpecArgs(
        automount_service_account_token=False,
        # No Service environment variables: a Service named like REDIS_* would otherwise set them here.
        enable_service_links=False,
        security_context=_pod_security(),
        termination_grace_period_seconds=TERMINATION_GRACE_S,
        topology_spread_constraints=k8s_common.spread(target, PART),
        affinity=_node_affinity(spec, target),
        containers=[k8s.core.v1.ContainerArgs(
            name=PART,
            image=spec.image,
            image_pull_policy="IfNotPresent",
            # The same entrypoint as on Docker.
            command=["/bin/sh", START_PATH],
            env=[env[k] for k in sorted(env)],
            ports=ports,
            resources=k8s_common.resources(spec.resources),
            # Not cluster state: the nodes must be ready before the Job that forms the cluster runs.
            readiness_probe=k8s.core.v1.ProbeArgs(exec_=ready, period_seconds=5, timeout_seconds=3,
                                                  failure_threshold=3),
            # Up to 150 s to come up: the start script waits up to 30 s for peers' names after an outage.
            startup_probe=k8s.core.v1.ProbeArgs(exec_=alive, period_seconds=5, timeout_seconds=3,
                                                failure_threshold=30),
            liveness_probe=k8s.core.v1.ProbeArgs(exec_=alive, period_seconds=10, timeout_seconds=5,
                                                 failure_threshold=6),
            security_context=_container_security(),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name=DATA_VOLUME, mount_path=DATA_DIR),
                # Each pod mounts its own node's file as redis.conf, where start.sh expects it.
                k8s.core.v1.VolumeMountArgs(name=CONFIG_VOLUME, mount_path=CONF_PATH,
                                            sub_path_expr=conf_key(f"$({POD_NAME_ENV})"), read_only=True),
                k8s.core.v1.VolumeMountArgs(name=CONFIG_VOLUME, mount_path=START_PATH, sub_path=START_KEY,
                                            read_only=True),
                k8s.core.v1.VolumeMountArgs(name=TMP_VOLUME, mount_path="/tmp"),
            ],
        ), *_monitoring_sidecars(target, secret_name, monitor=monitor)],
        volumes=[
            k8s.core.v1.VolumeArgs(name=CONFIG_VOLUME, config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                name=cm_name, default_mode=0o444)),
            k8s.core.v1.VolumeArgs(name=TMP_VOLUME, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                size_limit="16Mi")),
        ],
    )


def _monitoring_sidecars(target: KubernetesTarget, secret_name: str, *,
                         monitor: bool) -> list[k8s.core.v1.ContainerArgs]:
    """The monitoring part's Redis exporter (banyan:monitoring.enabled), beside the node in every pod, logged in as
    its own ACL user (`monitor`: the nodes define it); none otherwise, so a stack without monitoring renders its
    pods as before. Adding or removing it rolls the nodes."""
    exporter = monitoring_k8s.redis_exporter_sidecar(target.spec, secret_name=secret_name,
                                                     password_key=MONITOR_PASSWORD_KEY)
    if exporter is not None and not monitor:
        raise ValueError("the Redis exporter sidecar needs its ACL user: build PlatformSecrets with redis_monitor "
                         "(model/thresholds.py redis_monitor_user)")
    return [] if exporter is None else [exporter]


def one_node_per_host(spec: RedisSpec) -> bool:
    """Whether every Redis node must have a Kubernetes node of its own. redis-cli pairs masters and replicas by
    IP address only, and a failover swaps them, so which pod backs which cannot be pinned: where there are
    replicas, only "no two Redis nodes on one host" keeps a master and its replica from failing together. That
    takes `spec.nodes` schedulable nodes, which the tiers with replicas (large: 6) are sized for; without
    replicas there is nothing to separate and the spread stays best effort."""
    return spec.mode == "cluster" and spec.replicas_per_master > 0


def _node_affinity(spec: RedisSpec, target: KubernetesTarget) -> k8s.core.v1.AffinityArgs | None:
    if not one_node_per_host(spec):
        return None
    return k8s.core.v1.AffinityArgs(pod_anti_affinity=k8s.core.v1.PodAntiAffinityArgs(
        required_during_scheduling_ignored_during_execution=[k8s.core.v1.PodAffinityTermArgs(
            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=target.selector(PART)),
            topology_key="kubernetes.io/hostname",
        )],
    ))


def _create_job(parent: pulumi.Resource, name: str, spec: RedisSpec, target: KubernetesTarget, cm_name: str,
                secret_name: str, *, depends_on: list[pulumi.Resource]) -> k8s.batch.v1.Job:
    """The creation step: create-cluster.sh against every node's announced name, once all nodes are ready.

    Idempotent: against a formed cluster it checks the cluster and exits 0 without changing anything; against
    a node set it cannot form (some nodes empty, others in a cluster: a tier grown from 3 to 6 nodes) it exits
    1 with what to do, and `pulumi up` fails. A Job's pod template is immutable: the template carries the
    nodes' digest, so any change to the nodes replaces the Job (deleted first: its name is fixed, and stable
    for `kubectl logs job/redis-cluster-create`) and the check runs again after the StatefulSet rolled out.
    No ttlSecondsAfterFinished: Kubernetes would delete the finished Job, and the next refresh would create
    (and run) it again while its log was gone.
    """
    labels = target.labels(CREATE_PART, CREATE_COMPONENT)
    return k8s.batch.v1.Job(
        f"{name}-cluster-create",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=create_job_name(spec),
            namespace=target.namespace_name,
            labels=labels,
            # A Job that failed (say, on nodes that need a manual add-node) is replaced, so run again, by the
            # next `pulumi up` instead of being awaited forever.
            annotations={"pulumi.com/replaceUnready": "true"},
        ),
        spec=k8s.batch.v1.JobSpecArgs(
            backoff_limit=JOB_BACKOFF_LIMIT,
            active_deadline_seconds=JOB_DEADLINE_S,
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    labels=labels,
                    annotations={NODES_ANNOTATION: nodes_digest(spec, target.namespace_name)},
                ),
                spec=k8s.core.v1.PodSpecArgs(
                    # A failed run leaves its pod (and log) behind; the retry is a new pod.
                    restart_policy="Never",
                    automount_service_account_token=False,
                    enable_service_links=False,
                    security_context=_pod_security(),
                    containers=[k8s.core.v1.ContainerArgs(
                        name="create-cluster",
                        image=spec.image,
                        image_pull_policy="IfNotPresent",
                        command=["/bin/sh", CREATE_PATH],
                        env=[_password_env(CLI_AUTH_ENV, secret_name)],
                        resources=k8s.core.v1.ResourceRequirementsArgs(limits=CREATE_LIMITS, requests=CREATE_REQUESTS),
                        security_context=_container_security(),
                        volume_mounts=[k8s.core.v1.VolumeMountArgs(name=CONFIG_VOLUME, mount_path=CONF_DIR,
                                                                   read_only=True)],
                    )],
                    volumes=[k8s.core.v1.VolumeArgs(
                        name=CONFIG_VOLUME,
                        config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                            name=cm_name, default_mode=0o444,
                            items=[k8s.core.v1.KeyToPathArgs(key=CREATE_KEY, path=CREATE_KEY)]),
                    )],
                ),
            ),
        ),
        opts=pulumi.ResourceOptions.merge(
            target.opts(parent, depends_on=depends_on),
            pulumi.ResourceOptions(
                delete_before_replace=True,
                replace_on_changes=["spec"],
                custom_timeouts=pulumi.CustomTimeouts(create=JOB_TIMEOUT, update=JOB_TIMEOUT),
            ),
        ),
    )


def _job_succeeded(status: Any, logs: str) -> bool:
    """pulumi-kubernetes only finishes creating a Job once it completed, and fails `pulumi up` when it
    failed; should a Failed Job reach here anyway (awaiting turned off), it fails the update the same way.
    Under mocks there is no status."""
    conditions = getattr(status, "conditions", None) or []
    for condition in conditions:
        if condition.type == "Failed" and condition.status == "True":
            raise pulumi.RunError(
                f"Redis cluster creation failed ({condition.reason}: {condition.message}); its log: `{logs}`. "
                "Fix the cause and run `pulumi up` again "
                "(the failed Job is replaced; a run against a formed cluster changes nothing)."
            )
    return True
