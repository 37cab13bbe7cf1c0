"""The monitoring part on Kubernetes: PodMonitors for the parts' metrics ports and one PrometheusRule, for the
cluster's Prometheus Operator; or, with banyan:monitoring.install_operator, kube-prometheus-stack (pinned)
installed into the monitoring namespace first. The NetworkPolicies that admit its scrapers are
components/network_policies.py's (banyan:monitoring.namespace and pod_labels)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.monitoring import config as c
from components.postgres import kubernetes as postgres_k8s
from components.seam import Built
from components.target import KubernetesTarget
from model.spec import PlatformSpec

API_VERSION = "monitoring.coreos.com/v1"
PART = "monitoring"
# kube-prometheus-stack 88.2.0 runs Prometheus Operator v0.93.0 (its appVersion), the release of the CRDs the
# tests validate the monitors and rules against.
CHART = "kube-prometheus-stack"
CHART_VERSION = "88.2.0"
CHART_REPO = "https://prometheus-community.github.io/helm-charts"
RELEASE = "banyan-monitoring"


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
    }


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
