"""The Nginx load balancer on Kubernetes: a Deployment behind a Service (LoadBalancer by default)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s

from components import k8s_common as kc
from components.nginx.config import HEALTH_PATH, SHUTDOWN_TIMEOUT_S, render_nginx_conf
from components.seam import Built
from components.target import KubernetesTarget
from model.spec import NginxSpec

PART = "nginx"
CONF_DIR = "/etc/nginx"
# Cluster DNS, by name: nginx resolves it at start; `resolve` upstreams then follow the gateway pods.
CLUSTER_DNS = "kube-dns.kube-system.svc.cluster.local"


def build(parent: pulumi.Resource, name: str, spec: NginxSpec, *, upstreams: Sequence[str], upstream_port: int,
          peers: int, target: KubernetesTarget) -> Built:
    """The public URL is an Output: a LoadBalancer's address is only known once provisioned."""
    conf = render_nginx_conf(spec, upstreams, upstream_port, resolver=CLUSTER_DNS, peers=peers)
    # Named after its content: a new config is a new ConfigMap, and the Deployment's template change rolls the
    # pods onto it, while running pods keep the old one until they are replaced (never deleted under them).
    conf_name = f"nginx-conf-{hashlib.sha256(conf.encode()).hexdigest()[:10]}"
    config = kc.config_map(f"{name}-conf", target=target, part=PART, parent=parent, object_name=conf_name,
                           data={"nginx.conf": conf})
    probe = k8s.core.v1.ProbeArgs(
        http_get=k8s.core.v1.HTTPGetActionArgs(path=HEALTH_PATH, port="http"),
        period_seconds=5, timeout_seconds=2, failure_threshold=3,
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
                    termination_grace_period_seconds=SHUTDOWN_TIMEOUT_S + 5,
                    topology_spread_constraints=kc.spread(target, PART),
                    containers=[
                        k8s.core.v1.ContainerArgs(
                            name=PART,
                            image=spec.image,
                            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=spec.listen_port,
                                                                 protocol="TCP")],
                            resources=kc.resources(spec.resources),
                            readiness_probe=probe,
                            liveness_probe=probe,
                            # The master process binds port 80 and switches to the nginx user: it keeps the
                            # image's default capabilities, but may not gain more.
                            security_context=k8s.core.v1.SecurityContextArgs(
                                allow_privilege_escalation=False,
                                seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
                            ),
                            volume_mounts=[k8s.core.v1.VolumeMountArgs(
                                name="conf", mount_path=f"{CONF_DIR}/nginx.conf", sub_path="nginx.conf",
                                read_only=True)],
                        )
                    ],
                    volumes=[k8s.core.v1.VolumeArgs(
                        name="conf", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=conf_name))],
                ),
            ),
        ),
        opts=target.opts(parent, depends_on=[config]),
    )
    service = kc.service(f"{name}-service", target=target, part=PART, parent=parent, object_name=PART,
                         service_type=spec.service_type,
                         ports=[kc.Port("http", spec.public_port, spec.listen_port)])
    created: list[pulumi.Resource] = [config, deployment, service]
    if spec.instances > 1:
        created.append(kc.disruption_budget(f"{name}-pdb", target=target, part=PART, parent=parent,
                                            object_name=PART))
    return Built(hosts=[PART], port=spec.public_port, wait_on=created, url=public_url(service, spec, target))


def public_url(service: k8s.core.v1.Service, spec: NginxSpec, target: KubernetesTarget) -> pulumi.Output[str]:
    """Where clients reach the platform: the load balancer's address once the cloud has assigned it
    (`pulumi up` waits for it), any node's NodePort, or the in-cluster name for ClusterIP."""
    in_cluster = f"http://{PART}.{target.namespace_name}.svc.cluster.local:{spec.public_port}"
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
