"""The Nginx load balancer on the Docker target: the platform's only port published beyond loopback."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from components import docker_common
from components.nginx import kubernetes
from components.nginx.config import HEALTH_PATH, SHUTDOWN_TIMEOUT_S, render_nginx_conf
from components.target import KubernetesTarget, Target
from model.spec import NginxSpec

TYPE = "banyan:index:NginxLoadBalancer"
CONF_PATH = "/etc/nginx/nginx.conf"
# Docker's embedded DNS server, present in every container on a user-defined network.
DOCKER_DNS = "127.0.0.11"
# Everything reachable from other machines listens here; the rest of the platform stays on loopback.
PUBLIC_IP = "0.0.0.0"


def _resources(depends_on: object) -> list[pulumi.Resource]:
    """The resources in a ResourceOptions.depends_on; an Output there cannot be forwarded before it resolves."""
    if depends_on is None:
        return []
    items = depends_on if isinstance(depends_on, (list, tuple)) else [depends_on]
    if not all(isinstance(item, pulumi.Resource) for item in items):
        raise TypeError("NginxLoadBalancer: opts.depends_on must list resources, not Outputs")
    return list(items)


class NginxLoadBalancer(pulumi.ComponentResource):
    """Nginx balancing least-connections over the gateway instances, published on the host's public port."""

    public_url: pulumi.Input[str]
    upstreams: list[str]
    containers: list[pulumi.Resource]

    def __init__(
        self,
        name: str,
        spec: NginxSpec,
        *,
        upstreams: Sequence[str],
        upstream_port: int,
        target: Target,
        peers: int | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`peers`: how many gateways the upstream names stand for (Kubernetes: one headless name)."""
        super().__init__(TYPE, name, None, opts)
        self.upstreams = list(upstreams)
        if isinstance(target, KubernetesTarget):
            self.containers, self.public_url = kubernetes.build(
                self, name, spec, upstreams=upstreams, upstream_port=upstream_port,
                peers=peers or len(upstreams), target=target)
            self.register_outputs({"public_url": self.public_url, "upstreams": self.upstreams})
            return

        conf = render_nginx_conf(spec, upstreams, upstream_port, resolver=DOCKER_DNS)
        # The spec allows one instance on Docker: a host port can be published once.
        instance = spec.instance_names[0]
        container = docker_common.container(
            f"{name}-container",
            target=target,
            instance=instance,
            part="nginx",
            image=spec.image,
            resources=spec.resources,
            health=docker_common.Health.http(spec.listen_port, HEALTH_PATH),
            parent=self,
            uploads=[docker_common.Upload(CONF_PATH, conf)],
            published=[docker_common.Published(spec.listen_port, spec.public_port, ip=PUBLIC_IP)],
            # Children do not inherit a component's depends_on: the container itself must wait for
            # what the caller named (the gateway containers), or it may start before any gateway.
            depends_on=_resources(opts.depends_on if opts else None),
            # Docker's SIGKILL must come after nginx's own bound on a graceful stop.
            stop_timeout_s=SHUTDOWN_TIMEOUT_S + 5,
        )

        self.public_url = f"http://localhost:{spec.public_port}"
        self.containers = [container]
        self.register_outputs(
            {"public_url": self.public_url, "upstreams": self.upstreams, "containers": self.containers}
        )
