"""The Nginx load balancer on the Docker target: the platform's only port published beyond loopback."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi

from components import docker_common
from components.nginx.config import HEALTH_PATH, SHUTDOWN_TIMEOUT_S, render_nginx_conf
from components.seam import Built
from components.target import DockerTarget
from model.spec import NginxSpec

CONF_PATH = "/etc/nginx/nginx.conf"
# Docker's embedded DNS server, present in every container on a user-defined network.
DOCKER_DNS = "127.0.0.11"


def build(parent: pulumi.Resource, name: str, spec: NginxSpec, *, upstreams: Sequence[str], upstream_port: int,
          depends_on: Sequence[pulumi.Resource], target: DockerTarget, metrics_log: str | None = None,
          labels: Mapping[str, str] | None = None) -> Built:
    """One container (a host port can be published once), started after `depends_on` (the gateways and, with the
    monitoring part, mtail). `metrics_log`: a second access_log destination; `labels`: the container's own."""
    conf = render_nginx_conf(spec, upstreams, upstream_port, resolver=DOCKER_DNS, metrics_log=metrics_log)
    instance = spec.instance_names[0]
    container = docker_common.container(
        f"{name}-container",
        target=target,
        instance=instance,
        part="nginx",
        image=spec.image,
        resources=spec.resources,
        health=docker_common.Health.http(spec.listen_port, HEALTH_PATH),
        parent=parent,
        uploads=[docker_common.Upload(CONF_PATH, conf)],
        # Loopback unless the stack says otherwise (banyan:nginx.publish_address): the only part that may be.
        published=[docker_common.Published(spec.listen_port, spec.public_port, ip=spec.publish_address)],
        # Children do not inherit a component's depends_on: the container itself must wait for
        # what the caller named (the gateway containers), or it may start before any gateway.
        depends_on=list(depends_on),
        # Docker's SIGKILL must come after nginx's own bound on a graceful stop.
        stop_timeout_s=SHUTDOWN_TIMEOUT_S + 5,
        labels=labels,
    )
    return Built(hosts=[instance], port=spec.public_port, wait_on=[container],
                 url=f"http://localhost:{spec.public_port}")
