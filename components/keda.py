"""KEDA on Kubernetes: the operator (a pinned Helm chart, optional), the RabbitMQ monitoring user its scalers read
queue depths as, and, per service that asks for it, a ScaledObject in place of banyan's HorizontalPodAutoscaler.

The RabbitMQ trigger reads the management API (`protocol: http`), which counts a queue's `messages` (ready and
unacknowledged); over AMQP, or with `excludeUnacknowledged`, it sees ready messages only, and scales busy pods away
while they still hold their prefetch (kedacore/keda#638, #356, #5050, #6719). The target per instance is
model/capacity.py's queue_target_per_instance.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import k8s_common as kc
from components.rabbitmq import kubernetes as rabbitmq_k8s
from components.rabbitmq.config import APP_VHOST
from components.target import KubernetesTarget
from model import pins
from model.spec import PlatformSpec, ServiceSpec

RELEASE = "keda"
CHART = "keda"
CHART_REPO = "https://kedacore.github.io/charts"
CHART_VERSION = pins.KEDA_CHART_VERSION

API_VERSION = "keda.sh/v1alpha1"
TOPOLOGY_API_VERSION = rabbitmq_k8s.API_VERSION  # the Messaging Topology Operator's User and Permission

# The RabbitMQ user KEDA reads queue depths as: the `monitoring` tag (the management API's queue figures) and
# access to the vhost with no resource permission at all (`^$` matches no name: it can neither declare, publish
# nor consume; a `read: .*` would let it consume the queues). Checked on a real broker (RabbitMQ 3.10): such a user
# reads /api/queues/<vhost>/<queue> and the regex listing with their `messages`, and basic.get is refused; without
# any permission on the vhost both reads are refused. Never the administrator.
MONITORING_USER = "banyan-keda"
MONITORING_TAGS = ("monitoring",)
MONITORING_PERMISSIONS = {"configure": "^$", "write": "^$", "read": "^$"}
TRIGGER_AUTH = "rabbitmq-queue-depth"

TRIGGER_NAME = "queue-depth"
# Three failed reads in a row (KEDA polls every 30 s) before the fallback count applies.
FALLBACK_FAILURES = 3
# Scale-down: the HPA's default five-minute window written out, and one pod a minute, so a pod that finishes its
# in-flight messages in its grace period is not followed by the rest at once.
SCALE_DOWN_WINDOW_S = 300
SCALE_DOWN_PODS = 1
SCALE_DOWN_PERIOD_S = 60
# KEDA takes over the HPA of the same name (the one banyan made while the scaler was off) instead of refusing the
# ScaledObject because another HPA scales the Deployment (its admission webhook's check).
TRANSFER_HPA = {"scaledobject.keda.sh/transfer-hpa-ownership": "true"}


def management_url(spec: PlatformSpec) -> str:
    """The RabbitMQ client Service's management API (the operator names the Service after the cluster)."""
    host = spec.kubernetes.service_host(rabbitmq_k8s.client_service_name(spec.rabbitmq))
    return f"http://{host}:{spec.rabbitmq.management_port}"


def rabbitmq_trigger(service: ServiceSpec, spec: PlatformSpec) -> dict[str, Any]:
    qs = service.queue_scaling
    assert qs is not None
    metadata = {
        "protocol": "http",
        "host": management_url(spec),
        "vhostName": APP_VHOST,
        "mode": "QueueLength",
        "value": qs.per_instance,
        # Counted: ready + unacknowledged (the management API's `messages`), so pods busy with their prefetch stay.
        "excludeUnacknowledged": "false",
    }
    if qs.pattern is not None or len(qs.queues) > 1:
        pattern = qs.pattern if qs.pattern is not None else "^(" + "|".join(re.escape(q) for q in qs.queues) + ")$"
        metadata.update({"queueName": pattern, "useRegex": "true", "operation": "sum"})
    else:
        metadata["queueName"] = qs.queues[0]
    return {"type": "rabbitmq", "name": TRIGGER_NAME, "metadata": dict(sorted(metadata.items())),
            "authenticationRef": {"name": TRIGGER_AUTH}}


def scaled_object_spec(service: ServiceSpec, spec: PlatformSpec) -> dict[str, Any]:
    """The ScaledObject's `spec`: plain data, a pure function of the spec."""
    qs, scaling = service.queue_scaling, service.autoscaling
    assert qs is not None
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service.name},
        "minReplicaCount": scaling.min_replicas,
        "maxReplicaCount": scaling.max_replicas,
        # The metric unreadable (RabbitMQ's management API down, the user refused): the fallback count, or the
        # current one if higher, never fewer.
        "fallback": {"failureThreshold": FALLBACK_FAILURES, "replicas": qs.fallback_replicas,
                     "behavior": "currentReplicasIfHigher"},
        "advanced": {"horizontalPodAutoscalerConfig": {
            "name": service.name,
            "behavior": {"scaleDown": {
                "stabilizationWindowSeconds": SCALE_DOWN_WINDOW_S,
                "policies": [{"type": "Pods", "value": SCALE_DOWN_PODS, "periodSeconds": SCALE_DOWN_PERIOD_S}],
            }},
        }},
        "triggers": [
            rabbitmq_trigger(service, spec),
            {"type": "cpu", "metricType": "Utilization", "metadata": {"value": str(scaling.cpu_percent)}},
            {"type": "memory", "metricType": "Utilization", "metadata": {"value": str(scaling.memory_percent)}},
        ],
    }


@dataclass(frozen=True)
class Shared:
    """What every ScaledObject waits for: the operator's release (its CRDs) and the TriggerAuthentication."""

    wait_on: list[pulumi.Resource]


def build_shared(parent: pulumi.Resource, name: str, target: KubernetesTarget,
                 rabbitmq: Sequence[pulumi.Resource]) -> Shared:
    """Once per stack, where a service scales on queue depth: KEDA (unless the cluster runs it), the monitoring user
    (made by the Messaging Topology Operator, as the applications' user is: components/rabbitmq/kubernetes.py) and
    the TriggerAuthentication that hands KEDA its credentials. `rabbitmq`: the RabbitmqCluster to wait for."""
    spec = target.spec
    kube = spec.kubernetes
    release: list[pulumi.Resource] = []
    if kube.install_keda:
        chart = k8s.helm.v3.Release(
            f"{name}-keda",
            name=RELEASE,
            chart=CHART,
            version=CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
            namespace=kube.keda_namespace,
            create_namespace=True,
            # Its admission webhooks must answer before a ScaledObject is submitted.
            skip_await=False,
            # Uninstalling the chart would take its CRDs, and every ScaledObject with them.
            opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=True, protect=spec.protect),
        )
        release.append(chart)
        # The chart's pods run within "restricted" by default (non-root, every capability dropped, no privilege
        # escalation, RuntimeDefault seccomp: its values.yaml), as the other operators' do.
        kc.restricted_operator_namespace(f"{name}-keda-namespace", kube.keda_namespace, parent=parent,
                                         release=chart)
    generated = random.RandomPassword(f"{name}-keda-rabbitmq-password", length=32, special=False,
                                      opts=pulumi.ResourceOptions(parent=parent))
    password: pulumi.Output[str] = pulumi.Output.secret(generated.result)
    mq = spec.rabbitmq
    user = rabbitmq_k8s.topology_user(
        parent, f"{name}-keda", mq, target, username=MONITORING_USER, password=password, tags=MONITORING_TAGS,
        permissions=rabbitmq_k8s.VhostPermissions(vhost=APP_VHOST, **MONITORING_PERMISSIONS),
        depends_on=list(rabbitmq))
    secret_name = rabbitmq_k8s.user_credentials_secret_name(mq, MONITORING_USER)
    auth = k8s.apiextensions.CustomResource(
        f"{name}-keda-trigger-auth",
        api_version=API_VERSION,
        kind="TriggerAuthentication",
        metadata=target.metadata(TRIGGER_AUTH, mq.name, "keda"),
        spec={"secretTargetRef": [{"parameter": key, "name": secret_name, "key": key}
                                  for key in ("username", "password")]},
        opts=target.opts(parent, depends_on=[*release, user.secret, *user.wait_on]),
    )
    return Shared(wait_on=[*release, auth])


def scaled_object(parent: pulumi.Resource, name: str, service: ServiceSpec, target: KubernetesTarget,
                  depends_on: list[pulumi.Resource]) -> k8s.apiextensions.CustomResource:
    return k8s.apiextensions.CustomResource(
        f"{name}-scaledobject",
        api_version=API_VERSION,
        kind="ScaledObject",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=service.name, namespace=target.namespace_name,
                                            labels=target.labels(service.name), annotations=dict(TRANSFER_HPA)),
        spec=scaled_object_spec(service, target.spec),
        opts=target.opts(parent, depends_on=depends_on),
    )
