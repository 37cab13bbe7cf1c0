"""NginxLoadBalancer: the platform's only public entry, balancing over the gateway instances, built for
the stack's target (Docker: components/nginx/docker.py; Kubernetes: components/nginx/kubernetes.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi

from components.nginx import docker, kubernetes, swarm
from components.target import KubernetesTarget, SwarmTarget, Target
from model.spec import NginxSpec

TYPE = "banyan:index:NginxLoadBalancer"


def _resources(depends_on: object) -> list[pulumi.Resource]:
    """The resources in a ResourceOptions.depends_on; an Output there cannot be forwarded before it resolves."""
    if depends_on is None:
        return []
    items = depends_on if isinstance(depends_on, (list, tuple)) else [depends_on]
    if not all(isinstance(item, pulumi.Resource) for item in items):
        raise TypeError("NginxLoadBalancer: opts.depends_on must list resources, not Outputs")
    return list(items)


class NginxLoadBalancer(pulumi.ComponentResource):
    """Nginx balancing least-connections over the gateway instances, published on the public port."""

    public_url: pulumi.Input[str]
    upstreams: list[str]
    wait_on: list[pulumi.Resource]

    def __init__(
        self,
        name: str,
        spec: NginxSpec,
        *,
        upstreams: Sequence[str],
        upstream_port: int,
        target: Target,
        peers: int | None = None,
        metrics_log: str | None = None,
        labels: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`peers`: how many gateways the upstream names stand for (Kubernetes: one headless name). Docker:
        `metrics_log` is a second access_log destination (the monitoring part's), `labels` the container's own."""
        super().__init__(TYPE, name, None, opts)
        self.upstreams = list(upstreams)
        if isinstance(target, KubernetesTarget):
            built = kubernetes.build(self, name, spec, upstreams=upstreams, upstream_port=upstream_port,
                                     peers=peers or len(upstreams), target=target)
        elif isinstance(target, SwarmTarget):
            built = swarm.build(self, name, spec, upstreams=upstreams, upstream_port=upstream_port,
                                peers=peers or len(upstreams),
                                depends_on=_resources(opts.depends_on if opts else None), target=target)
        else:
            built = docker.build(self, name, spec, upstreams=upstreams, upstream_port=upstream_port,
                                 depends_on=_resources(opts.depends_on if opts else None), target=target,
                                 metrics_log=metrics_log, labels=labels)
        assert built.url is not None, "both builders give the public URL"
        self.public_url = built.url
        self.wait_on = built.wait_on
        self.register_outputs({"public_url": self.public_url, "upstreams": self.upstreams, "wait_on": self.wait_on})
