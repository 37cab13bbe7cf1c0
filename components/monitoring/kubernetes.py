"""The monitoring part on Kubernetes: PodMonitors for the parts' metrics ports and one PrometheusRule, for the
cluster's Prometheus Operator; or, with banyan:monitoring.install_operator, kube-prometheus-stack (pinned)
installed into the monitoring namespace first. The NetworkPolicies that admit its scrapers are
components/network_policies.py's (banyan:monitoring.namespace and pod_labels).

Redis and Nginx export nothing themselves: their pods carry this part's sidecars (the Redis exporter, mtail), which
components/redis/kubernetes.py and components/nginx/kubernetes.py add from the functions below where the part is on
(model/thresholds.py redis_metrics, nginx_metrics), so a stack without it renders their pods as before."""

from __future__ import annotations

import hashlib
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import k8s_common as kc
from components.monitoring import config as c
from components.monitoring.images import REDIS_EXPORTER
from components.postgres import kubernetes as postgres_k8s
from components.redis.config import MONITOR_USER
from components.seam import Built
from components.target import KubernetesTarget
from model.preflight_kubernetes import MTAIL_CONTAINER, REDIS_EXPORTER_CONTAINER
from model.spec import PlatformSpec, Resources, ResourceSpec
from model.thresholds import nginx_metrics, redis_metrics

API_VERSION = "monitoring.coreos.com/v1"
PART = "monitoring"
# kube-prometheus-stack 88.2.0 runs Prometheus Operator v0.93.0 (its appVersion), the release of the CRDs the
# tests validate the monitors and rules against.
CHART = "kube-prometheus-stack"
CHART_VERSION = "88.2.0"
CHART_REPO = "https://prometheus-community.github.io/helm-charts"
RELEASE = "banyan-monitoring"
# The sidecars' metrics ports (one name in each pod: the PodMonitors and NetworkPolicies refer to it).
METRICS_PORT_NAME = "metrics"
# Each sidecar serves one pod's metrics (a Redis node's INFO; one Nginx's requests): small Go programs, a few
# MiB of heap.
SIDECAR_RESOURCES = ResourceSpec(limits=Resources(cpu_millis=200, memory_mib=64),
                                 requests=Resources(cpu_millis=20, memory_mib=32))
# The Nginx pod's own address for the access log's datagrams (never leaves the pod).
MTAIL_SYSLOG_HOST = "127.0.0.1"
# mtail's program: its key in the ConfigMap, and the pod's volume of it.
MTAIL_PROGRAM_KEY = "nginx.mtail"
MTAIL_VOLUME = "mtail-program"


def chart_values() -> dict[str, Any]:
    """Its Prometheus selects every PodMonitor and PrometheusRule (not only the chart's own release label); no
    Grafana (not part of the guide's operating model)."""
    return {
        "grafana": {"enabled": False},
        "prometheus": {"prometheusSpec": {
            "podMonitorSelectorNilUsesHelmValues": False,
            "serviceMonitorSelectorNilUsesHelmValues": False,
            "ruleSelectorNilUsesHelmValues": False,
        }},
    }


def _instance_from_pod() -> list[dict[str, Any]]:
    """The instance label names the pod (as the Docker target names the container), not its address."""
    return [{"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "instance"}]


def pod_monitors(spec: PlatformSpec, target: KubernetesTarget) -> dict[str, dict[str, Any]]:
    """name -> PodMonitor spec. CloudNativePG's instance manager exports `cnpg_*` on its `metrics` port (9187);
    RabbitMQ's Prometheus plugin serves its aggregate on `prometheus` (15692) and per-queue depth and consumers
    under /metrics/detailed."""
    interval = f"{spec.monitoring.scrape_interval_s}s"
    mq_selector = target.selector(spec.rabbitmq.name)
    return {
        f"{spec.postgres.name}": {
            "selector": {"matchLabels": postgres_k8s.instance_pod_selector(spec.postgres)},
            "podMetricsEndpoints": [{"port": "metrics", "interval": interval, "relabelings": _instance_from_pod()}],
        },
        f"{spec.rabbitmq.name}": {
            "selector": {"matchLabels": mq_selector},
            "podMetricsEndpoints": [
                {"port": "prometheus", "interval": interval, "relabelings": _instance_from_pod()},
                {"port": "prometheus", "path": "/metrics/detailed", "interval": interval,
                 "params": {"family": ["queue_coarse_metrics", "queue_consumer_count"]},
                 "relabelings": _instance_from_pod()},
            ],
        },
        # The sidecars (redis_exporter_sidecar, mtail_sidecar): every Redis node's exporter, every Nginx pod's mtail.
        **({f"{spec.redis.name}": {
            "selector": {"matchLabels": target.selector(spec.redis.name)},
            "podMetricsEndpoints": [{"port": METRICS_PORT_NAME, "interval": interval,
                                     "relabelings": _instance_from_pod()}],
        }} if redis_metrics(spec) else {}),
        **({f"{spec.nginx.name}": {
            "selector": {"matchLabels": target.selector(spec.nginx.name)},
            "podMetricsEndpoints": [{"port": METRICS_PORT_NAME, "interval": interval,
                                     "relabelings": _instance_from_pod()}],
        }} if nginx_metrics(spec) else {}),
    }


# ---- the sidecars the parts' pods carry where the monitoring part is on -----------------------------------------

def _sidecar_security() -> k8s.core.v1.SecurityContextArgs:
    """Restricted (no privilege escalation, no capability, RuntimeDefault seccomp), non-root as the pod is, and a
    read-only root: neither program writes a file (mtail logs to stderr)."""
    return k8s.core.v1.SecurityContextArgs(
        run_as_non_root=True,
        allow_privilege_escalation=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        read_only_root_filesystem=True,
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def _metrics_probe(path: str, *, period_s: int, failures: int) -> k8s.core.v1.ProbeArgs:
    return k8s.core.v1.ProbeArgs(http_get=k8s.core.v1.HTTPGetActionArgs(path=path, port=METRICS_PORT_NAME),
                                 timeout_seconds=2, period_seconds=period_s, failure_threshold=failures)


def redis_exporter_sidecar(spec: PlatformSpec, *, secret_name: str,
                           password_key: str) -> k8s.core.v1.ContainerArgs | None:
    """The Redis exporter beside each Redis node, scraping it on the pod's loopback (the Docker exporter's flags,
    one target instead of its /scrape); None where Redis is not scraped. It logs in as its own ACL user, as on
    Docker (components/redis/config.py MONITOR_USER: statistics only), its password from the Redis Secret's
    `password_key`. A cluster node reports `redis_cluster_state` by itself (the exporter reads CLUSTER INFO wherever
    INFO says cluster_enabled:1; its --is-cluster is only for key checks across the cluster, which are not used)."""
    if not redis_metrics(spec):
        return None
    return k8s.core.v1.ContainerArgs(
        name=REDIS_EXPORTER_CONTAINER,
        image=REDIS_EXPORTER.ref,
        image_pull_policy="IfNotPresent",
        args=[*c.redis_exporter_args(), f"--redis.addr=redis://localhost:{spec.redis.port}"],
        env=[k8s.core.v1.EnvVarArgs(name=c.REDIS_EXPORTER_USER_ENV, value=MONITOR_USER),
             k8s.core.v1.EnvVarArgs(name=c.REDIS_EXPORTER_PASSWORD_ENV, value_from=k8s.core.v1.EnvVarSourceArgs(
                 secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=secret_name, key=password_key)))],
        ports=[k8s.core.v1.ContainerPortArgs(name=METRICS_PORT_NAME, container_port=c.REDIS_EXPORTER_PORT,
                                             protocol="TCP")],
        resources=kc.resources(SIDECAR_RESOURCES),
        # Its own endpoint (it answers once listening, whether Redis does or not: Redis' readiness is Redis' own).
        readiness_probe=_metrics_probe("/health", period_s=10, failures=3),
        security_context=_sidecar_security(),
    )


def mtail_config_map_name(spec: PlatformSpec) -> str:
    """Named after the program: a new program is a new ConfigMap and a new pod template (the pods roll)."""
    return f"{spec.nginx.name}-mtail-{hashlib.sha256(c.render_mtail_program().encode()).hexdigest()[:10]}"


def nginx_metrics_log(spec: PlatformSpec) -> str | None:
    """The access_log destination Nginx adds on Kubernetes: mtail beside it in the pod; None without Nginx
    metrics."""
    return c.nginx_syslog_target(MTAIL_SYSLOG_HOST) if nginx_metrics(spec) else None


def mtail_sidecar(spec: PlatformSpec) -> k8s.core.v1.ContainerArgs | None:
    """mtail beside each Nginx, taking its access log as syslog datagrams on the pod's loopback (the Docker
    container's program and flags). A native sidecar (an init container that keeps running): it is listening
    before Nginx starts, and stops only after Nginx has drained, so no request of the pod goes uncounted. No
    readiness probe: a broken mtail must not take Nginx out of the load balancer (its target goes down instead,
    BanyanTargetDown). None without Nginx metrics."""
    if not nginx_metrics(spec):
        return None
    image = spec.monitoring.mtail_image
    assert image is not None
    return k8s.core.v1.ContainerArgs(
        name=MTAIL_CONTAINER,
        image=image,
        image_pull_policy="IfNotPresent",
        restart_policy="Always",
        command=["mtail"],
        args=c.mtail_args(MTAIL_SYSLOG_HOST),
        ports=[k8s.core.v1.ContainerPortArgs(name=METRICS_PORT_NAME, container_port=c.MTAIL_PORT, protocol="TCP")],
        resources=kc.resources(SIDECAR_RESOURCES),
        # Nginx starts once mtail serves (allowed a minute).
        startup_probe=_metrics_probe("/metrics", period_s=2, failures=30),
        liveness_probe=_metrics_probe("/metrics", period_s=20, failures=3),
        security_context=_sidecar_security(),
        volume_mounts=[k8s.core.v1.VolumeMountArgs(name=MTAIL_VOLUME, mount_path=c.MTAIL_PROGRAM,
                                                   sub_path=MTAIL_PROGRAM_KEY, read_only=True)],
    )


def mtail_volume(spec: PlatformSpec) -> k8s.core.v1.VolumeArgs:
    return k8s.core.v1.VolumeArgs(name=MTAIL_VOLUME, config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
        name=mtail_config_map_name(spec), default_mode=0o444))


def mtail_files() -> dict[str, str]:
    return {MTAIL_PROGRAM_KEY: c.render_mtail_program()}


def build(parent: pulumi.Resource, name: str, spec: PlatformSpec, *, target: KubernetesTarget) -> Built:
    mon = spec.monitoring
    depends: list[pulumi.Resource] = []
    if mon.install_operator:
        depends.append(k8s.helm.v3.Release(
            f"{name}-operator",
            name=RELEASE,
            chart=CHART,
            version=CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
            namespace=mon.namespace,
            create_namespace=True,
            values=chart_values(),
            # Its CRDs must be served before the monitors below are submitted.
            skip_await=False,
            # Uninstalling the chart would take its CRDs, and every monitor and rule with them.
            opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=True),
        ))
    labels = {**target.labels(PART), **dict(mon.monitor_labels)}
    made: list[pulumi.Resource] = []
    for object_name, monitor in pod_monitors(spec, target).items():
        made.append(k8s.apiextensions.CustomResource(
            f"{name}-{object_name}-podmonitor",
            api_version=API_VERSION,
            kind="PodMonitor",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=target.namespace_name, labels=labels),
            spec=monitor,
            opts=target.opts(parent, depends_on=depends),
        ))
    made.append(k8s.apiextensions.CustomResource(
        f"{name}-rules",
        api_version=API_VERSION,
        kind="PrometheusRule",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{spec.project}-alerts", namespace=target.namespace_name,
                                            labels=labels),
        spec={"groups": c.rule_groups(spec)},
        opts=target.opts(parent, depends_on=depends),
    ))
    return Built(hosts=[], port=c.PROMETHEUS_PORT, wait_on=made)
