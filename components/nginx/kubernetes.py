"""The Nginx load balancer on Kubernetes: a Deployment behind a Service (LoadBalancer by default)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s

from components import k8s_common as kc
from components.monitoring import kubernetes as monitoring_k8s
from components.nginx.config import (
    DRAIN_DELAY_S,
    HEALTH_PATH,
    SHUTDOWN_TIMEOUT_S,
    UNPRIVILEGED_RUN_DIR,
    render_nginx_conf,
)
from components.seam import Built
from components.target import KubernetesTarget
from model.spec import NginxSpec

PART = "nginx"
CONF_DIR = "/etc/nginx"
# The cluster DNS (banyan:kubernetes.dns_service, dns_namespace, cluster_domain), by name: nginx resolves it at
# start; `resolve` upstreams then follow the gateway pods.
# The nginx user and group of the official image (docker-library/nginx, Debian and Alpine: uid 101, gid 101),
# and of nginxinc/nginx-unprivileged (which already runs as 101 and listens on 8080). The master runs as it
# from the start, not as root: it needs no capability, as it listens on an unprivileged port
# (spec.listen_port) and keeps its pid and temp files in a scratch directory (render_nginx_conf's
# `unprivileged`). Either image works with these settings; nginx's files in /etc/nginx are world-readable.
IMAGE_UID = 101
IMAGE_GID = 101
TMP_VOLUME = "tmp"
# Request bodies and responses larger than the buffers spill to the temp paths: client_max_body_size (10m)
# per upload in flight, on disk (an emptyDir counts against the pod's ephemeral storage).
TMP_SIZE = "256Mi"


def build(parent: pulumi.Resource, name: str, spec: NginxSpec, *, upstreams: Sequence[str], upstream_port: int,
          peers: int, target: KubernetesTarget) -> Built:
    """The public URL is an Output: a LoadBalancer's address is only known once provisioned."""
    # With Nginx metrics (banyan:monitoring.enabled and mtail_image): a second access_log, to mtail in the pod.
    mtail = monitoring_k8s.mtail_sidecar(target.spec)
    conf = render_nginx_conf(spec, upstreams, upstream_port, resolver=target.spec.kubernetes.dns_host, peers=peers,
                             unprivileged=True, metrics_log=monitoring_k8s.nginx_metrics_log(target.spec))
    # Named after its content: a new config is a new ConfigMap, and the Deployment's template change rolls the
    # pods onto it, while running pods keep the old one until they are replaced (never deleted under them).
    conf_name = f"nginx-conf-{hashlib.sha256(conf.encode()).hexdigest()[:10]}"
    config = kc.config_map(f"{name}-conf", target=target, part=PART, parent=parent, object_name=conf_name,
                           data={"nginx.conf": conf})
    configs: list[pulumi.Resource] = [config]
    if mtail is not None:
        configs.append(kc.config_map(f"{name}-mtail", target=target, part=PART, parent=parent,
                                     object_name=monitoring_k8s.mtail_config_map_name(target.spec),
                                     data=monitoring_k8s.mtail_files()))
    # Both probes ask nginx itself (HEALTH_PATH checks no gateway): readiness soon, liveness only after a
    # minute of silence, so a busy nginx is taken out of rotation rather than restarted.
    ready = k8s.core.v1.ProbeArgs(
        http_get=k8s.core.v1.HTTPGetActionArgs(path=HEALTH_PATH, port="http"),
        period_seconds=5, timeout_seconds=2, failure_threshold=3,
    )
    alive = k8s.core.v1.ProbeArgs(
        http_get=k8s.core.v1.HTTPGetActionArgs(path=HEALTH_PATH, port="http"),
        period_seconds=10, timeout_seconds=5, failure_threshold=6,
    )
    deployment = k8s.apps.v1.Deployment(
        f"{name}-deployment",
        metadata=target.metadata(PART, PART),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=spec.instances,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=target.selector(PART)),
            strategy=k8s.apps.v1.DeploymentStrategyArgs(
                type="RollingUpdate",
                rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1),
            ),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=target.labels(PART)),
                spec=k8s.core.v1.PodSpecArgs(
                    automount_service_account_token=False,
                    security_context=kc.pod_security_context(IMAGE_UID, IMAGE_GID),
                    # The drain delay, then nginx's graceful stop, then a margin before the kill.
                    termination_grace_period_seconds=DRAIN_DELAY_S + SHUTDOWN_TIMEOUT_S + 5,
                    topology_spread_constraints=kc.spread(target, PART),
                    init_containers=[mtail] if mtail is not None else None,
                    containers=[
                        k8s.core.v1.ContainerArgs(
                            name=PART,
                            image=spec.image,
                            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=spec.listen_port,
                                                                 protocol="TCP")],
                            resources=kc.resources(spec.resources),
                            readiness_probe=ready,
                            liveness_probe=alive,
                            lifecycle=kc.drain_delay(DRAIN_DELAY_S),
                            # Non-root from the start (see IMAGE_UID): no capability at all, a read-only root.
                            security_context=kc.restricted_security_context(read_only_root=True),
                            volume_mounts=[
                                k8s.core.v1.VolumeMountArgs(
                                    name="conf", mount_path=f"{CONF_DIR}/nginx.conf", sub_path="nginx.conf",
                                    read_only=True),
                                k8s.core.v1.VolumeMountArgs(name=TMP_VOLUME, mount_path=UNPRIVILEGED_RUN_DIR),
                            ],
                        )
                    ],
                    volumes=[
                        k8s.core.v1.VolumeArgs(
                            name="conf", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=conf_name)),
                        kc.tmp_volume(TMP_VOLUME, TMP_SIZE),
                        *([monitoring_k8s.mtail_volume(target.spec)] if mtail is not None else []),
                    ],
                ),
            ),
        ),
        opts=target.opts(parent, depends_on=configs),
    )
    service = kc.service(f"{name}-service", target=target, part=PART, parent=parent, object_name=PART,
                         service_type=spec.service_type,
                         # Straight to a node's own Nginx pods, never forwarded by another node (which would
                         # replace the client's address with its own): the gateways see, and rate-limit by,
                         # the client. The load balancer health-checks each node for local Nginx pods.
                         external_traffic_policy="Local" if spec.service_type != "ClusterIP" else None,
                         ports=[kc.Port("http", spec.public_port, spec.listen_port)])
    created: list[pulumi.Resource] = [*configs, deployment, service]
    if spec.instances > 1:
        created.append(kc.disruption_budget(f"{name}-pdb", target=target, part=PART, parent=parent,
                                            object_name=PART))
    return Built(hosts=[PART], port=spec.public_port, wait_on=created, url=public_url(service, spec, target))


def public_url(service: k8s.core.v1.Service, spec: NginxSpec, target: KubernetesTarget) -> pulumi.Output[str]:
    """Where clients reach the platform: the load balancer's address once the cloud has assigned it
    (`pulumi up` waits for it), any node's NodePort, or the in-cluster name for ClusterIP."""
    in_cluster = f"http://{target.spec.kubernetes.service_host(PART)}:{spec.public_port}"
    if spec.service_type == "LoadBalancer":
        def address(status: k8s.core.v1.outputs.ServiceStatus | None) -> str:
            ingress = (status.load_balancer.ingress or []) if status and status.load_balancer else []
            if not ingress:
                return in_cluster
            return f"http://{ingress[0].hostname or ingress[0].ip}:{spec.public_port}"

        return service.status.apply(address)
    if spec.service_type == "NodePort":
        return service.spec.apply(lambda s: f"http://<any node>:{s.ports[0].node_port}" if s and s.ports
                                  else in_cluster)
    return pulumi.Output.from_input(in_cluster)
