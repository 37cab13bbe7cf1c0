"""Kubernetes objects built the same way for every part: resources, Secrets, ConfigMaps, Services, probes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.target import KubernetesTarget
from model.spec import ResourceSpec

# The Kubernetes version the stack's objects are written and validated for (testkit.k8s_check validates
# against its schemas); the namespace pins its Pod Security profile to the same minor.
KUBERNETES_VERSION = "1.33.0"
POD_SECURITY_PREFIX = "pod-security.kubernetes.io/"
POD_SECURITY_LEVEL = "restricted"
# A fixed uid/gid for parts whose image may run as root (the gateway and services: placeholder python
# images, or banyan-core's own): non-root, above the range of host and distribution users (< 10000),
# and owning nothing in the image, so the container can write only where a volume is mounted.
APP_UID = 10001
APP_GID = 10001


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
            publish_not_ready: bool = False, external_traffic_policy: str | None = None) -> k8s.core.v1.Service:
    return k8s.core.v1.Service(
        name,
        metadata=target.metadata(object_name or name, part),
        spec=k8s.core.v1.ServiceSpecArgs(
            type=service_type,
            cluster_ip="None" if headless else None,
            publish_not_ready_addresses=publish_not_ready or None,
            external_traffic_policy=external_traffic_policy,
            selector=target.selector(part),
            ports=[k8s.core.v1.ServicePortArgs(name=p.name, port=p.port, target_port=p.target_port or p.port,
                                               protocol="TCP") for p in ports],
        ),
        opts=target.opts(parent),
    )


def drain_delay(seconds: int) -> k8s.core.v1.LifecycleArgs:
    """A pod being deleted leaves its Services' endpoints at once, but those who route to it notice a little
    later: it keeps serving for `seconds` before its process is told to stop. The kubelet's own sleep action
    (beta and on by default since Kubernetes 1.30, GA in 1.34), so no image needs a sleep binary."""
    return k8s.core.v1.LifecycleArgs(pre_stop=k8s.core.v1.LifecycleHandlerArgs(
        sleep=k8s.core.v1.SleepActionArgs(seconds=seconds)))


def pod_security_version() -> str:
    """`v1.33` for KUBERNETES_VERSION 1.33.0: the profile as that minor defines it, not `latest`, so a
    cluster upgrade never tightens admission under a running stack unannounced."""
    major, minor, *_ = KUBERNETES_VERSION.split(".")
    return f"v{major}.{minor}"


def pod_security_labels() -> dict[str, str]:
    """The namespace's Pod Security admission labels: enforce, warn and audit at "restricted", pinned."""
    labels: dict[str, str] = {}
    for mode in ("audit", "enforce", "warn"):
        labels[f"{POD_SECURITY_PREFIX}{mode}"] = POD_SECURITY_LEVEL
        labels[f"{POD_SECURITY_PREFIX}{mode}-version"] = pod_security_version()
    return labels


def restricted_operator_namespace(name: str, namespace: str, *, parent: pulumi.Resource,
                                  release: pulumi.Resource) -> k8s.core.v1.NamespacePatch:
    """Pod Security "restricted" on an operator's namespace, which its Helm release creates: a patch (server-side
    apply of the labels only), because the namespace is the release's and, on a stack deployed before this, already
    exists (pulumi-kubernetes refuses to create an existing object). The charts pinned here run their operators'
    pods within "restricted" by default (non-root, no privilege escalation, every capability dropped, the
    runtime's seccomp profile: the values of CloudNativePG's chart 0.29.0 and of CloudPirates'
    rabbitmq-cluster-operator 0.6.5, for both of its operators), so any pod the namespace admits from now on is
    held to it. Applied after the release: pods the release created first were within it anyway; enforcement
    holds for every later one (restarts, upgrades)."""
    return k8s.core.v1.NamespacePatch(
        name,
        metadata=k8s.meta.v1.ObjectMetaPatchArgs(name=namespace, labels=pod_security_labels()),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[release]),
    )


def restricted_security_context(*, read_only_root: bool = False) -> k8s.core.v1.SecurityContextArgs:
    """No privilege escalation, no capabilities, the runtime's seccomp profile (and a read-only root:
    the part then writes only to the volumes it mounts)."""
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        read_only_root_filesystem=True if read_only_root else None,
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def pod_security_context(uid: int, gid: int) -> k8s.core.v1.PodSecurityContextArgs:
    """Every container of the pod as `uid`:`gid` (never root, whatever the image's USER says), volumes
    group-owned by `gid`, and the runtime's seccomp profile."""
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=gid,
        fs_group=gid,
        # Only volumes whose root is not yet group-owned are walked (a large volume is not re-chowned
        # at every start).
        fs_group_change_policy="OnRootMismatch",
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def tmp_volume(name: str = "tmp", size_limit: str = "64Mi") -> k8s.core.v1.VolumeArgs:
    """A scratch directory (emptyDir) for a container whose root filesystem is read-only."""
    return k8s.core.v1.VolumeArgs(name=name, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit=size_limit))


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
