"""Kubernetes objects built the same way for every part: resources, Secrets, ConfigMaps, Services, probes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.target import KubernetesTarget
from model.spec import ResourceSpec


def quantity_cpu(millis: int) -> str:
    return f"{millis}m"


def quantity_memory(mib: int) -> str:
    return f"{mib}Mi"


def resources(spec: ResourceSpec) -> k8s.core.v1.ResourceRequirementsArgs:
    return k8s.core.v1.ResourceRequirementsArgs(
        limits={"cpu": quantity_cpu(spec.limits.cpu_millis), "memory": quantity_memory(spec.limits.memory_mib)},
        requests={"cpu": quantity_cpu(spec.requests.cpu_millis),
                  "memory": quantity_memory(spec.requests.memory_mib)},
    )


def resources_dict(spec: ResourceSpec) -> dict[str, dict[str, str]]:
    """The same, as plain data, for custom resources (CloudNativePG, RabbitmqCluster)."""
    return {
        "limits": {"cpu": quantity_cpu(spec.limits.cpu_millis), "memory": quantity_memory(spec.limits.memory_mib)},
        "requests": {"cpu": quantity_cpu(spec.requests.cpu_millis),
                     "memory": quantity_memory(spec.requests.memory_mib)},
    }


def secret(name: str, *, target: KubernetesTarget, part: str, data: Mapping[str, pulumi.Input[str]],
           parent: pulumi.Resource, object_name: str | None = None,
           secret_type: str = "Opaque") -> k8s.core.v1.Secret:
    """A Secret from Pulumi secrets; its data stays secret in state and in previews."""
    return k8s.core.v1.Secret(
        name,
        metadata=target.metadata(object_name or name, part),
        type=secret_type,
        string_data={k: pulumi.Output.secret(data[k]) for k in sorted(data)},
        opts=target.opts(parent),
    )


def config_map(name: str, *, target: KubernetesTarget, part: str, data: Mapping[str, str],
               parent: pulumi.Resource, object_name: str | None = None) -> k8s.core.v1.ConfigMap:
    return k8s.core.v1.ConfigMap(
        name,
        metadata=target.metadata(object_name or name, part),
        data={k: data[k] for k in sorted(data)},
        opts=target.opts(parent),
    )


@dataclass(frozen=True)
class Port:
    name: str
    port: int
    target_port: int | None = None


def service(name: str, *, target: KubernetesTarget, part: str, ports: Sequence[Port], parent: pulumi.Resource,
            object_name: str | None = None, headless: bool = False, service_type: str = "ClusterIP",
            publish_not_ready: bool = False) -> k8s.core.v1.Service:
    return k8s.core.v1.Service(
        name,
        metadata=target.metadata(object_name or name, part),
        spec=k8s.core.v1.ServiceSpecArgs(
            type=service_type,
            cluster_ip="None" if headless else None,
            publish_not_ready_addresses=publish_not_ready or None,
            selector=target.selector(part),
            ports=[k8s.core.v1.ServicePortArgs(name=p.name, port=p.port, target_port=p.target_port or p.port,
                                               protocol="TCP") for p in ports],
        ),
        opts=target.opts(parent),
    )


def restricted_security_context() -> k8s.core.v1.SecurityContextArgs:
    """No privilege escalation, no capabilities, the runtime's seccomp profile."""
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def spread(target: KubernetesTarget, part: str) -> list[k8s.core.v1.TopologySpreadConstraintArgs]:
    """Spread instances across nodes; best effort, so a small cluster still schedules them all."""
    return [
        k8s.core.v1.TopologySpreadConstraintArgs(
            max_skew=1,
            topology_key="kubernetes.io/hostname",
            when_unsatisfiable="ScheduleAnyway",
            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=target.selector(part)),
        )
    ]


def disruption_budget(name: str, *, target: KubernetesTarget, part: str, parent: pulumi.Resource,
                      object_name: str | None = None) -> k8s.policy.v1.PodDisruptionBudget:
    """At most one instance down at a time for voluntary disruptions; unhealthy pods may always be
    evicted, so the budget never blocks a node drain."""
    return k8s.policy.v1.PodDisruptionBudget(
        name,
        metadata=target.metadata(object_name or name, part),
        spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
            max_unavailable=1,
            unhealthy_pod_eviction_policy="AlwaysAllow",
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=target.selector(part)),
        ),
        opts=target.opts(parent),
    )
