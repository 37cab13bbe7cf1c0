"""BanyanPlatform: every part of banyan-core on one target, wired from one resolved PlatformSpec."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker
import pulumi_kubernetes as k8s

from components import k8s_common, keda, network_policies
from components.monitoring import Monitoring
from components.nginx import NginxLoadBalancer
from components.postgres import PostgresCluster
from components.rabbitmq import RabbitMQCluster
from components.redis import RedisCluster
from components.secrets import PlatformSecrets
from components.target import DockerTarget, KubernetesTarget, SwarmTarget, Target
from components.workload import ApiGateway, Service
from model.contract import Credentials, Endpoints, app_env, urls
from model.images import REQUIRE_DIGESTS_PROP
from model.preflight import PROJECT_LABEL, STACK_LABEL
from model.spec import PlatformSpec
from model.thresholds import redis_monitor_user

TYPE = "banyan:index:BanyanPlatform"


class BanyanPlatform(pulumi.ComponentResource):
    spec: PlatformSpec
    endpoints: Endpoints
    credentials: Credentials
    public_url: pulumi.Input[str]
    rabbitmq_management_url: str | None
    secrets: PlatformSecrets
    postgres: PostgresCluster
    rabbitmq: RabbitMQCluster
    redis: RedisCluster
    gateway: ApiGateway
    services: list[Service]
    nginx: NginxLoadBalancer
    monitoring: Monitoring | None

    def __init__(self, name: str, spec: PlatformSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        # Marked only when asked, so a stack without it renders as before.
        marks = {REQUIRE_DIGESTS_PROP: True} if spec.require_digests else None
        super().__init__(TYPE, name, marks, opts)
        self.spec = spec
        child = pulumi.ResourceOptions(parent=self)
        self.secrets = PlatformSecrets(f"{name}-secrets", opts=child, redis_monitor=redis_monitor_user(spec))
        target = self._target(name, spec, child)

        self.postgres = PostgresCluster(f"{name}-postgres", spec.postgres, passwords=self.secrets.postgres,
                                        target=target, opts=child)
        self.rabbitmq = RabbitMQCluster(f"{name}-rabbitmq", spec.rabbitmq, credentials=self.secrets.rabbitmq,
                                        target=target, opts=child)
        self.redis = RedisCluster(f"{name}-redis", spec.redis, credentials=self.secrets.redis,
                                  target=target, opts=child)
        self.endpoints = Endpoints(
            postgres_primary=self.postgres.primary_host,
            postgres_replicas=tuple(self.postgres.replica_hosts),
            postgres_port=self.postgres.port,
            rabbitmq_hosts=tuple(self.rabbitmq.hosts),
            rabbitmq_port=self.rabbitmq.port,
            redis_hosts=tuple(self.redis.hosts),
            redis_port=self.redis.port,
        )
        mq = self.secrets.rabbitmq
        # The applications' own user on every target (its vhost, no management tags): the nodes' entrypoint
        # reconciles it on Docker and Swarm, the Messaging Topology Operator's User and Permission make it on
        # Kubernetes.
        mq_user, mq_password = mq.app_user, mq.app_password
        self.credentials = creds = Credentials(
            postgres_app_password=self.secrets.postgres.app,
            rabbitmq_user=mq_user,
            rabbitmq_password=mq_password,
            redis_user=self.secrets.redis.app_user,
            redis_password=self.secrets.redis.app_password,
        )
        # Docker and Swarm: apps start once the data tier is healthy (containers and services wait on health).
        # Kubernetes: pods start at once and their readiness probes hold traffic until they connect.
        data_tier = ([*self.postgres.wait_on, *self.rabbitmq.wait_on, *self.redis.wait_on]
                     if isinstance(target, DockerTarget | SwarmTarget) else [])
        self.gateway = ApiGateway(f"{name}-gateway", spec.gateway,
                                  env=app_env(spec, spec.gateway, self.endpoints, creds),
                                  target=target, depends_on=data_tier, opts=child)
        # Kubernetes: KEDA and its RabbitMQ monitoring user, where a service scales on queue depth.
        keda_wait = (keda.build_shared(self, name, target, self.rabbitmq.wait_on).wait_on
                     if isinstance(target, KubernetesTarget) and spec.queue_scaled else [])
        self.services = [
            Service(f"{name}-{svc.name}", svc, env=app_env(spec, svc, self.endpoints, creds),
                    target=target, depends_on=keda_wait if svc.queue_scaling else data_tier, opts=child)
            for svc in spec.services
        ]
        # Built only where enabled (banyan:monitoring.enabled): a stack without it renders as before.
        self.monitoring = (Monitoring(f"{name}-monitoring", spec, postgres=self.secrets.postgres,
                                      redis=self.secrets.redis, target=target, scraped=data_tier, opts=child)
                           if spec.monitoring.enabled and not isinstance(target, SwarmTarget) else None)
        log_sink = self.monitoring.nginx_log_sink if self.monitoring else []
        self.nginx = NginxLoadBalancer(f"{name}-nginx", spec.nginx, upstreams=self.gateway.hosts,
                                       upstream_port=self.gateway.port, target=target,
                                       peers=spec.gateway.instances,
                                       metrics_log=self.monitoring.nginx_metrics_log if self.monitoring else None,
                                       labels=self.monitoring.nginx_labels if self.monitoring else None,
                                       opts=pulumi.ResourceOptions(parent=self,
                                                                   depends_on=[*self.gateway.wait_on, *log_sink]))
        if isinstance(target, KubernetesTarget):
            network_policies.build(self, name, spec, target)
        self.public_url = self.nginx.public_url
        self.rabbitmq_management_url = self.rabbitmq.management_url
        self.register_outputs({
            "public_url": self.public_url,
            "rabbitmq_management_url": self.rabbitmq_management_url,
        })

    def _target(self, name: str, spec: PlatformSpec, child: pulumi.ResourceOptions) -> Target:
        """The network (Docker) or the namespace (Kubernetes) every part is built into."""
        if spec.target == "docker":
            network = docker.Network(
                f"{name}-network",
                name=f"{spec.project}-{spec.stack}",
                driver="bridge",
                labels=[docker.NetworkLabelArgs(label=k, value=v)
                        for k, v in sorted({PROJECT_LABEL: spec.project, STACK_LABEL: spec.stack}.items())],
                opts=child,
            )
            return DockerTarget(spec=spec, network=network, parent=self, name=name)
        if spec.target == "swarm":
            # Services reach each other only over an overlay network (a swarm's bridge networks are per node).
            overlay = docker.Network(
                f"{name}-network",
                name=f"{spec.project}-{spec.stack}",
                driver="overlay",
                labels=[docker.NetworkLabelArgs(label=k, value=v)
                        for k, v in sorted({PROJECT_LABEL: spec.project, STACK_LABEL: spec.stack}.items())],
                opts=child,
            )
            return SwarmTarget(spec=spec, network=overlay, parent=self, name=name)
        # Deleting a namespace deletes every volume claim in it: it is kept and protected like the data.
        # The stack owns it, so it also says what may run in it: Pod Security "restricted", enforced.
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=spec.kubernetes.namespace,
                labels={"app.kubernetes.io/part-of": spec.project, "app.kubernetes.io/instance": spec.stack,
                        "app.kubernetes.io/managed-by": "pulumi", **k8s_common.pod_security_labels()},
            ),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True, protect=spec.protect),
        )
        return KubernetesTarget(spec=spec, namespace=namespace, parent=self, name=name)

    def export(self) -> None:
        """Stack outputs: where to reach the platform, and (as secrets) how to connect to its stores."""
        spec = self.spec
        u = urls(spec, self.endpoints, self.credentials)
        pulumi.export("public_url", self.public_url)
        pulumi.export("rabbitmq_management_url", self.rabbitmq_management_url)
        pulumi.export("database_url", u.database)
        pulumi.export("database_replica_urls", u.database_replicas)
        pulumi.export("rabbitmq_urls", u.rabbitmq_all)
        pulumi.export("redis_url", u.redis)
        if self.monitoring is not None and self.monitoring.url is not None:
            pulumi.export("prometheus_url", self.monitoring.url)
        pulumi.export("summary", {
            "tier": spec.tier,
            "target": spec.target,
            "gateway_instances": spec.gateway.instances,
            "services": {s.name: s.instances for s in spec.services},
            "postgres": {"replicas": spec.postgres.replicas, "max_connections": spec.postgres.max_connections},
            "rabbitmq_nodes": spec.rabbitmq.nodes,
            "redis": {"nodes": spec.redis.nodes, "mode": spec.redis.mode, "masters": spec.redis.masters},
            "connection_budget": spec.budget.arithmetic(),
        })
