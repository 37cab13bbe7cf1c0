"""Monitoring: metrics of every part and alerts at the Scalability Guide's thresholds, built for the stack's
target (Docker: components/monitoring/docker.py; Kubernetes: components/monitoring/kubernetes.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from components.monitoring import config, docker, kubernetes
from components.secrets import PostgresPasswords, RedisCredentials
from components.target import DockerTarget, KubernetesTarget, Target
from model.spec import PlatformSpec

TYPE = "banyan:index:Monitoring"


class Monitoring(pulumi.ComponentResource):
    """Prometheus' rules and scrape targets for the platform (and, on Docker, Prometheus and Alertmanager)."""

    url: pulumi.Input[str] | None
    wait_on: list[pulumi.Resource]
    # Docker: what Nginx must start after (mtail, its log sink), the access_log destination Nginx adds, and the
    # labels that tie Nginx's container to mtail's; empty / None without Nginx metrics.
    nginx_log_sink: list[pulumi.Resource]
    nginx_metrics_log: str | None
    nginx_labels: dict[str, str]

    def __init__(self, name: str, spec: PlatformSpec, *, postgres: PostgresPasswords, redis: RedisCredentials,
                 target: Target, scraped: Sequence[pulumi.Resource] = (),
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        self.nginx_log_sink, self.nginx_metrics_log, self.nginx_labels = [], None, {}
        if isinstance(target, KubernetesTarget):
            built = kubernetes.build(self, name, spec, target=target)
        elif isinstance(target, DockerTarget):
            self.nginx_log_sink = docker.build_nginx_metrics(self, name, spec, target)
            if self.nginx_log_sink:
                self.nginx_metrics_log = config.nginx_syslog_target(config.NGINX_METRICS_HOST)
                self.nginx_labels = docker.nginx_metrics_labels(spec)
            built = docker.build(self, name, spec, postgres=postgres, redis=redis, target=target, scraped=scraped)
        else:
            raise TypeError(f"Monitoring is not built for {type(target).__name__}")
        self.url = built.url
        self.wait_on = built.wait_on
        self.register_outputs({"url": self.url})
