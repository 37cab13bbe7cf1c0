"""Containers and volumes on the Docker target, built the same way for every part."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.target import DockerTarget
from model.preflight import CONFIG_LABEL, INSTANCE_LABEL, PART_LABEL
from model.readback import docker_cpus, go_duration
from model.spec import ResourceSpec

# Docker weighs CPU reservations as shares, 1024 per CPU.
_SHARES_PER_CPU = 1024


@dataclass(frozen=True)
class Health:
    """A Docker health check; `pulumi up` waits for it (wait=True), which orders start-up by health."""

    test: tuple[str, ...]
    interval_s: int = 5
    timeout_s: int = 3
    retries: int = 6
    start_period_s: int = 20

    @classmethod
    def http(cls, port: int, path: str, **kwargs: int) -> Health:
        # busybox wget ships in every Alpine-based image; it exits non-zero on a non-2xx answer.
        url = f"http://127.0.0.1:{port}{path}"
        return cls(("CMD", "wget", "-q", "-T", "2", "-O", "/dev/null", url), **kwargs)



@dataclass(frozen=True)
class Upload:
    """A rendered file shipped into the container before it starts."""

    path: str
    content: str
    executable: bool = False


@dataclass(frozen=True)
class Mount:
    volume: docker.Volume
    path: str


@dataclass(frozen=True)
class HostMount:
    """A path of the Docker host bind-mounted into the container, read-only unless said otherwise (an agent that
    reads the host, such as cAdvisor)."""

    host_path: str
    path: str
    read_only: bool = True


@dataclass(frozen=True)
class Published:
    """A port published on the Docker host; loopback unless the part is the public edge."""

    internal: int
    external: int
    ip: str = "127.0.0.1"


def cpu_shares(millis: int) -> int:
    return max(2, millis * _SHARES_PER_CPU // 1000)


def volume(target: DockerTarget, name: str, instance: str, part: str, parent: pulumi.Resource) -> docker.Volume:
    """A named volume for one stateful instance: kept on delete, protected where the stack says so.

    Its name holds no tier-dependent value, so changing the tier never replaces it.
    """
    return docker.Volume(
        name,
        name=target.volume_name(instance),
        labels=_labels(target, part, instance, docker.VolumeLabelArgs),
        opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=True, protect=target.spec.protect),
    )


def config_digest(uploads: Sequence[Upload], command: Sequence[str] | None = None,
                  entrypoint: Sequence[str] | None = None) -> str:
    """What a container runs on, besides its image and environment: its files and its command line. On every
    container as a label, so that a preview can tell which running nodes an update would replace for a new
    configuration (infra/preflight.py) without reading their files."""
    h = hashlib.sha256()
    for u in sorted(uploads, key=lambda u: u.path):
        h.update(f"{u.path}\0{int(u.executable)}\0{len(u.content)}\0".encode())
        h.update(u.content.encode())
    h.update(json.dumps([list(command or []), list(entrypoint or [])]).encode())
    return h.hexdigest()[:16]


def _labels(target: DockerTarget, part: str, instance: str, cls: type,
            extra: Mapping[str, str] | None = None) -> list:  # type: ignore[type-arg]
    values = {**target.labels, PART_LABEL: part, INSTANCE_LABEL: instance, **(extra or {})}
    return [cls(label=k, value=v) for k, v in sorted(values.items())]


def env_list(env: Mapping[str, pulumi.Input[str]]) -> list[pulumi.Input[str]]:
    """KEY=VALUE strings in key order, each as secret as its own value: a secret variable is a secret item, the
    others stay plain (and known during a preview), so a review can show which variable changed. The list's
    content and order are what Docker receives either way. The bridged Docker provider does not take secrets,
    so the engine stores a list holding one as a secret as a whole (state and `pulumi preview` show `envs` as
    one [secret]); the offline plan shows each variable."""
    return [_env_item(k, env[k]) for k in sorted(env)]


def _env_item(key: str, value: pulumi.Input[str]) -> pulumi.Input[str]:
    if isinstance(value, str):
        return f"{key}={value}"
    return pulumi.Output.concat(key, "=", value)


def container(
    name: str,
    *,
    target: DockerTarget,
    instance: str,
    part: str,
    image: str,
    resources: ResourceSpec,
    health: Health,
    parent: pulumi.Resource,
    env: Mapping[str, pulumi.Input[str]] | None = None,
    command: Sequence[str] | None = None,
    entrypoint: Sequence[str] | None = None,
    uploads: Sequence[Upload] = (),
    mounts: Sequence[Mount] = (),
    host_mounts: Sequence[HostMount] = (),
    published: Sequence[Published] = (),
    depends_on: Sequence[pulumi.Resource] = (),
    restart: str = "unless-stopped",
    stateful: bool = False,
    wait: bool = True,
    wait_timeout_s: int = 180,
    stop_timeout_s: int = 10,
    shm_size_mib: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> docker.Container:
    """One container of the platform, named after its instance, which is also its host name. `labels`: the
    part's own, beside the stack's (labels are fixed at create: a changed one replaces the container)."""
    pulled = target.image(image)
    return docker.Container(
        name,
        # Container names are global on a host: scoped like the volumes, so stacks share a host. The host name
        # and network alias stay the instance name that Nginx upstreams and cluster peers use.
        name=target.container_name(instance),
        hostname=instance,
        image=image,
        command=list(command) if command is not None else None,
        entrypoints=list(entrypoint) if entrypoint is not None else None,
        envs=env_list(env) if env else None,
        restart=restart,
        memory=resources.limits.memory_mib,
        # Swap equal to the limit: no swap. Docker would otherwise keep swap at twice the old limit, and an
        # in-place raise of the limit past that fails ("Memory limit should be smaller than memoryswap").
        memory_swap=resources.limits.memory_mib,
        memory_reservation=resources.requests.memory_mib,
        cpus=docker_cpus(resources.limits.cpu_millis),
        cpu_shares=cpu_shares(resources.requests.cpu_millis),
        healthcheck=docker.ContainerHealthcheckArgs(
            tests=list(health.test),
            interval=go_duration(health.interval_s),
            timeout=go_duration(health.timeout_s),
            retries=health.retries,
            start_period=go_duration(health.start_period_s),
        ),
        networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=target.network_name, aliases=[instance])],
        uploads=[
            docker.ContainerUploadArgs(file=u.path, content=u.content, executable=u.executable or None)
            for u in sorted(uploads, key=lambda u: u.path)
        ] or None,
        volumes=[
            docker.ContainerVolumeArgs(volume_name=m.volume.name, container_path=m.path)
            for m in sorted(mounts, key=lambda m: m.path)
        ] + [
            docker.ContainerVolumeArgs(host_path=h.host_path, container_path=h.path, read_only=h.read_only or None)
            for h in sorted(host_mounts, key=lambda h: h.path)
        ] or None,
        ports=[
            docker.ContainerPortArgs(internal=p.internal, external=p.external, ip=p.ip, protocol="tcp")
            for p in sorted(published, key=lambda p: p.internal)
        ] or None,
        labels=_labels(target, part, instance, docker.ContainerLabelArgs,
                       {**(labels or {}), CONFIG_LABEL: config_digest(uploads, command, entrypoint)}),
        # Explicit driver: these options exist for json-file, and a daemon defaulting to journald rejects them.
        log_driver="json-file",
        log_opts={"max-file": "3", "max-size": "10m"},
        wait=wait,
        wait_timeout=wait_timeout_s,
        stop_timeout=stop_timeout_s,
        # `stop_timeout` only applies to `docker stop`; on replace or destroy the provider stops the container
        # with destroy_grace_seconds (0 by default: SIGKILL), which would turn every replacement of a database
        # into crash recovery.
        destroy_grace_seconds=stop_timeout_s,
        shm_size=shm_size_mib,
        # Never let Docker drop a stateful container's volumes along with it.
        remove_volumes=False if stateful else None,
        # The data lives in named volumes (retained, protected); the container itself is disposable.
        # Its name is fixed, so a replacement must remove the old container before creating the new.
        opts=pulumi.ResourceOptions(
            parent=parent, depends_on=[pulled, *depends_on], delete_before_replace=True,
            # Docker cannot change a container's health check, and the provider would update it in place
            # without effect: a changed check replaces the container, so it reaches the running part.
            replace_on_changes=["healthcheck"],
        ),
    )
