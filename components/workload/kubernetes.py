"""The gateway and the business services on Kubernetes: a Deployment scaled by a HorizontalPodAutoscaler, or by
KEDA on queue depth (components/keda.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components import k8s_common as kc
from components import keda
from components.nginx.config import DRAIN_DELAY_S
from components.seam import Built
from components.target import KubernetesTarget
from model.spec import GatewaySpec, ServiceSpec, WorkloadSpec

# Kubernetes: the probes' pace. Startup allows a slow first boot (up to 60 s) before liveness applies.
_PROBE_PERIOD_S = 5
_STARTUP_FAILURES = 12
# What a stopping instance gets after its drain delay: in-flight requests finish on SIGTERM.
_SHUTDOWN_S = 30
# The root filesystem is read-only and the image's user is overridden (kc.APP_UID): /tmp is the one writable
# path, a scratch emptyDir. An image that must write elsewhere needs a volume there, not a writable root.
_TMP_VOLUME = "tmp"
_TMP_DIR = "/tmp"
_TMP_SIZE = "128Mi"


def build(parent: pulumi.Resource, name: str, spec: WorkloadSpec, *, env: Mapping[str, pulumi.Input[str]],
          target: KubernetesTarget, depends_on: Sequence[pulumi.Resource] = ()) -> Built:
    """A Deployment whose replica count the HorizontalPodAutoscaler owns (or, for a service scaled on queue depth,
    KEDA's ScaledObject, which waits on `depends_on`), its Service, a Secret with the credentials of the env
    contract, and a disruption budget where there is more than one pod."""
    part = spec.name
    hosts = [part]
    secret_keys = sorted(k for k, v in env.items() if not isinstance(v, str))
    env_secret = kc.secret(f"{name}-env", target=target, part=part, parent=parent, object_name=f"{part}-env",
                           data={k: env[k] for k in secret_keys})
    container_env = [
        k8s.core.v1.EnvVarArgs(
            name=key,
            value=value if isinstance(value, str) else None,
            value_from=None if isinstance(value, str) else k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=f"{part}-env", key=key)),
        )
        for key, value in sorted(env.items())
    ]

    def ready(failures: int) -> k8s.core.v1.ProbeArgs:
        return k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path=spec.health_path, port="http"),
            period_seconds=_PROBE_PERIOD_S, timeout_seconds=2, failure_threshold=failures,
        )

    def alive(failures: int) -> k8s.core.v1.ProbeArgs:
        """Shallow: the process answers (its liveness_path, or a connect to the port), whatever its dependencies
        do. The readiness path checks those; failing it takes the pod out of rotation, never restarts it."""
        shallow = spec.liveness_path
        return k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path=shallow, port="http") if shallow else None,
            tcp_socket=None if shallow else k8s.core.v1.TCPSocketActionArgs(port="http"),
            period_seconds=_PROBE_PERIOD_S, timeout_seconds=2, failure_threshold=failures,
        )

    # A changed credential must roll the pods (env from a Secret is read at start only). The digest
    # reveals nothing of the values, so it may travel in the clear and keep the template readable.
    checksum = pulumi.Output.unsecret(pulumi.Output.all(*(env[k] for k in secret_keys)).apply(
        lambda values: hashlib.sha256("\0".join([*secret_keys, *values]).encode()).hexdigest()[:16]))
    deployment = k8s.apps.v1.Deployment(
        f"{name}-deployment",
        metadata=target.metadata(part, part),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            # No `replicas`: the HorizontalPodAutoscaler owns the count, so an update never resets it.
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=target.selector(part)),
            strategy=k8s.apps.v1.DeploymentStrategyArgs(
                type="RollingUpdate",
                rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge="25%"),
            ),
            revision_history_limit=5,
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    labels=target.labels(part),
                    annotations={"banyan/env-checksum": checksum},
                ),
                spec=k8s.core.v1.PodSpecArgs(
                    automount_service_account_token=False,
                    # Pod Security "restricted": never root, even for an image whose USER is root (the
                    # placeholder python image); the uid owns nothing in the image, so its files stay read-only.
                    security_context=kc.pod_security_context(kc.APP_UID, kc.APP_GID),
                    termination_grace_period_seconds=DRAIN_DELAY_S + _SHUTDOWN_S,
                    topology_spread_constraints=kc.spread(target, part),
                    containers=[
                        k8s.core.v1.ContainerArgs(
                            name=part,
                            image=spec.image,
                            args=list(spec.command) if spec.command else None,
                            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=spec.port,
                                                                 protocol="TCP")],
                            env=container_env,
                            resources=kc.resources(spec.resources),
                            startup_probe=alive(_STARTUP_FAILURES),
                            readiness_probe=ready(2),
                            liveness_probe=alive(3),
                            # Nginx (for the gateway) and kube-proxy (for services) route to a stopping pod a
                            # little longer: it serves on until they have let go.
                            lifecycle=kc.drain_delay(DRAIN_DELAY_S),
                            security_context=kc.restricted_security_context(read_only_root=True),
                            volume_mounts=[k8s.core.v1.VolumeMountArgs(name=_TMP_VOLUME, mount_path=_TMP_DIR)],
                        )
                    ],
                    volumes=[kc.tmp_volume(_TMP_VOLUME, _TMP_SIZE)],
                ),
            ),
        ),
        opts=target.opts(parent, depends_on=[env_secret]),
    )
    service = kc.service(f"{name}-service", target=target, part=part, parent=parent, object_name=part,
                         ports=[kc.Port("http", spec.port)])
    # One owner of the replica count: KEDA's ScaledObject (which makes its own HPA) or banyan's HPA, never both.
    scaler: pulumi.Resource
    if isinstance(spec, ServiceSpec) and spec.queue_scaling is not None:
        scaler = keda.scaled_object(parent, name, spec, target, depends_on=[deployment, *depends_on])
    else:
        scaler = _hpa(parent, name, spec, target, deployment)
    created: list[pulumi.Resource] = [env_secret, deployment, service, scaler]
    if spec.autoscaling.min_replicas > 1:
        created.append(kc.disruption_budget(f"{name}-pdb", target=target, part=part, parent=parent,
                                            object_name=part))
    if isinstance(spec, GatewaySpec):
        # Nginx balances over the pods themselves (least_conn, retry on the next pod), not one virtual IP:
        # a headless Service resolves to every ready gateway pod.
        pods = f"{part}-pods"
        created.append(kc.service(f"{name}-pods", target=target, part=part, parent=parent, object_name=pods,
                                  headless=True, ports=[kc.Port("http", spec.port)]))
        hosts = [target.spec.kubernetes.service_host(pods)]
    return Built(hosts=hosts, port=spec.port, wait_on=created)


def _hpa(parent: pulumi.Resource, name: str, spec: WorkloadSpec, target: KubernetesTarget,
         deployment: pulumi.Resource) -> k8s.autoscaling.v2.HorizontalPodAutoscaler:
    part = spec.name
    return k8s.autoscaling.v2.HorizontalPodAutoscaler(
        f"{name}-hpa",
        metadata=target.metadata(part, part),
        spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
            scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                api_version="apps/v1", kind="Deployment", name=part),
            min_replicas=spec.autoscaling.min_replicas,
            max_replicas=spec.autoscaling.max_replicas,
            metrics=[
                _utilization("cpu", spec.autoscaling.cpu_percent),
                _utilization("memory", spec.autoscaling.memory_percent),
            ],
        ),
        opts=target.opts(parent, depends_on=[deployment]),
    )


def _utilization(resource: str, percent: int) -> k8s.autoscaling.v2.MetricSpecArgs:
    return k8s.autoscaling.v2.MetricSpecArgs(
        type="Resource",
        resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
            name=resource,
            target=k8s.autoscaling.v2.MetricTargetArgs(type="Utilization", average_utilization=percent),
        ),
    )
