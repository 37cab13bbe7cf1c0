"""The monitoring part on Docker: Prometheus and Alertmanager as containers of the stack, cAdvisor, an exporter per
PostgreSQL instance, one Redis exporter for every node, and mtail reading Nginx's access log; Prometheus scrapes
them over the platform network and publishes its UI on the host's loopback only."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from components import docker_common as dc
from components.monitoring import config as c
from components.monitoring.images import ALERTMANAGER, CADVISOR, POSTGRES_EXPORTER, PROMETHEUS, REDIS_EXPORTER
from components.seam import Built
from components.secrets import PostgresPasswords, RedisCredentials
from components.target import DockerTarget
from model.spec import PlatformSpec, Resources, ResourceSpec

PART = "monitoring"


def _size(cpu_limit: int, mem_limit: int, cpu_req: int, mem_req: int) -> ResourceSpec:
    return ResourceSpec(limits=Resources(cpu_millis=cpu_limit, memory_mib=mem_limit),
                        requests=Resources(cpu_millis=cpu_req, memory_mib=mem_req))


# Sized for one stack's few hundred series: Prometheus' head block and the rule evaluations; the exporters are
# small Go programs.
PROMETHEUS_RESOURCES = _size(1000, 1024, 100, 256)
ALERTMANAGER_RESOURCES = _size(250, 128, 50, 32)
EXPORTER_RESOURCES = _size(250, 128, 50, 32)
# cAdvisor reads every container's cgroups each housekeeping: a few MiB and well under 5 % of a core for a stack's
# dozens of containers (measured on the e2e engine); the limit leaves room for a busy host.
CADVISOR_RESOURCES = _size(250, 256, 50, 64)
# Prometheus flushes its head block on SIGTERM.
PROMETHEUS_STOP_TIMEOUT_S = 60


def prometheus_command(spec: PlatformSpec) -> list[str]:
    return [f"--config.file={c.PROMETHEUS_CONF}", f"--storage.tsdb.path={c.PROMETHEUS_DATA}",
            f"--storage.tsdb.retention.time={spec.monitoring.retention_days}d",
            f"--web.listen-address=:{c.PROMETHEUS_PORT}"]


def alertmanager_command() -> list[str]:
    return [f"--config.file={c.ALERTMANAGER_CONF}", f"--storage.path={c.ALERTMANAGER_DATA}",
            f"--web.listen-address=:{c.ALERTMANAGER_PORT}",
            # One Alertmanager: no gossip peers to look for.
            "--cluster.listen-address="]


# What cAdvisor reads of the host, read-only (measured on the e2e engine): the Docker socket under /var/run (to find
# the containers and their names and labels), /sys (their cgroups: CPU and memory usage and limits) and the Docker
# root (each container's read-write layer id: without it cAdvisor refuses the container). Not upstream's `/` at
# /rootfs, /dev/disk or --privileged: those serve filesystem, disk and OOM metrics, which are not collected.
CADVISOR_HOST_MOUNTS = (dc.HostMount("/var/run", "/var/run"), dc.HostMount("/sys", "/sys"),
                        dc.HostMount("/var/lib/docker", "/var/lib/docker"))


def cadvisor_command(spec: PlatformSpec) -> list[str]:
    """The same flags for the official image (its entrypoint adds -logtostderr) and the e2e suite's build."""
    return [f"-port={c.CADVISOR_PORT}", "-docker_only=true",
            # Fresh samples for every scrape, no more often.
            f"-housekeeping_interval={spec.monitoring.scrape_interval_s}s",
            # The stack's own labels only (every container label would be a metric label), CPU and memory only.
            "-store_container_labels=false", f"-whitelisted_container_labels={','.join(c.CADVISOR_LABELS)}",
            "-enable_metrics=cpu,memory"]


def redis_exporter_env(redis: RedisCredentials) -> dict[str, pulumi.Input[str]]:
    """The Redis exporter's login: the monitoring user (components/redis/config.py MONITOR_USER), never the
    administrator."""
    if redis.monitor_user is None or redis.monitor_password is None:
        raise ValueError("the Redis exporter needs its ACL user: build PlatformSecrets with redis_monitor "
                         "(model/thresholds.py redis_monitor_user)")
    return {c.REDIS_EXPORTER_USER_ENV: redis.monitor_user, c.REDIS_EXPORTER_PASSWORD_ENV: redis.monitor_password}


def nginx_metrics_labels(spec: PlatformSpec) -> dict[str, str]:
    """What Nginx's container carries of mtail's: Nginx resolves the syslog host once, at start, so a new mtail
    container (a new address) must come with a new Nginx (its label changes, which replaces it)."""
    digest = dc.config_digest([dc.Upload(c.MTAIL_PROGRAM, c.render_mtail_program())], c.mtail_args())
    return {"banyan.mtail-config": digest}


def build_nginx_metrics(parent: pulumi.Resource, name: str, spec: PlatformSpec,
                        target: DockerTarget) -> list[pulumi.Resource]:
    """mtail, which Nginx sends its access log to (syslog over UDP): before Nginx, which resolves it at start."""
    if not c.has_nginx_metrics(spec):
        return []
    image = spec.monitoring.mtail_image
    assert image is not None
    return [dc.container(
        f"{name}-nginx-metrics", target=target, instance=c.NGINX_METRICS_HOST, part=PART, image=image,
        resources=EXPORTER_RESOURCES, parent=parent,
        health=dc.Health.http(c.MTAIL_PORT, "/metrics"),
        entrypoint=["mtail"], command=c.mtail_args(),
        uploads=[dc.Upload(c.MTAIL_PROGRAM, c.render_mtail_program())],
    )]


def build(parent: pulumi.Resource, name: str, spec: PlatformSpec, *, postgres: PostgresPasswords,
          redis: RedisCredentials, target: DockerTarget, scraped: Sequence[pulumi.Resource]) -> Built:
    """`scraped`: the parts' containers, which the exporters and Prometheus start after (so the first scrapes
    find them, not an alert for a part that is still starting)."""
    pg = spec.postgres
    exporters: list[pulumi.Resource] = []
    for instance in pg.instance_names:
        exporters.append(dc.container(
            f"{name}-{instance}-exporter", target=target, instance=c.postgres_exporter_host(instance), part=PART,
            image=POSTGRES_EXPORTER.ref, resources=EXPORTER_RESOURCES, parent=parent,
            health=dc.Health.http(c.POSTGRES_EXPORTER_PORT, "/metrics"),
            command=c.postgres_exporter_args(),
            env={"DATA_SOURCE_URI": c.postgres_exporter_uri(spec, instance), "DATA_SOURCE_USER": pg.user,
                 "DATA_SOURCE_PASS": postgres.app},
            uploads=[dc.Upload(c.PG_QUERIES_PATH, c.render_pg_queries())],
            depends_on=list(scraped),
        ))
    exporters.append(dc.container(
        f"{name}-redis-exporter", target=target, instance=c.REDIS_EXPORTER_HOST, part=PART,
        image=REDIS_EXPORTER.ref, resources=EXPORTER_RESOURCES, parent=parent,
        health=dc.Health.http(c.REDIS_EXPORTER_PORT, "/health"),
        command=c.redis_exporter_args(),
        # Its own ACL user, which every node defines where the part is on (statistics only: no key, no value).
        env=redis_exporter_env(redis),
        depends_on=list(scraped),
    ))
    # The containers' CPU and memory against their limits (the BanyanContainer* alerts): no published port.
    exporters.append(dc.container(
        f"{name}-cadvisor", target=target, instance=c.CADVISOR_HOST, part=PART, image=CADVISOR.ref,
        resources=CADVISOR_RESOURCES, parent=parent,
        health=dc.Health.http(c.CADVISOR_PORT, "/healthz"),
        command=cadvisor_command(spec),
        host_mounts=CADVISOR_HOST_MOUNTS,
    ))
    alertmanager_data = dc.volume(target, f"{name}-alertmanager-data", c.ALERTMANAGER_HOST, PART, parent)
    alertmanager = dc.container(
        f"{name}-alertmanager", target=target, instance=c.ALERTMANAGER_HOST, part=PART, image=ALERTMANAGER.ref,
        resources=ALERTMANAGER_RESOURCES, parent=parent,
        health=dc.Health.http(c.ALERTMANAGER_PORT, "/-/ready"),
        command=alertmanager_command(),
        uploads=[dc.Upload(c.ALERTMANAGER_CONF, c.render_alertmanager_yml(spec))],
        mounts=[dc.Mount(alertmanager_data, c.ALERTMANAGER_DATA)],
        stateful=True,
    )
    prometheus_data = dc.volume(target, f"{name}-prometheus-data", c.PROMETHEUS_HOST, PART, parent)
    prometheus = dc.container(
        f"{name}-prometheus", target=target, instance=c.PROMETHEUS_HOST, part=PART, image=PROMETHEUS.ref,
        resources=PROMETHEUS_RESOURCES, parent=parent,
        health=dc.Health.http(c.PROMETHEUS_PORT, "/-/ready"),
        command=prometheus_command(spec),
        uploads=[dc.Upload(c.PROMETHEUS_CONF, c.render_prometheus_yml(spec)),
                 dc.Upload(c.RULES_PATH, c.render_rules(spec))],
        mounts=[dc.Mount(prometheus_data, c.PROMETHEUS_DATA)],
        # The UI and API on loopback only: they have no authentication.
        published=[dc.Published(c.PROMETHEUS_PORT, spec.monitoring.prometheus_port)],
        depends_on=[alertmanager, *exporters],
        stateful=True,
        stop_timeout_s=PROMETHEUS_STOP_TIMEOUT_S,
    )
    return Built(hosts=[c.PROMETHEUS_HOST], port=c.PROMETHEUS_PORT, wait_on=[prometheus],
                 url=f"http://127.0.0.1:{spec.monitoring.prometheus_port}")
