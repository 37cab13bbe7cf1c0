"""Services, configs and secrets on the Swarm target, built the same way for every part.

A part's Swarm builder hands `service` what its Docker builder hands `docker_common.container` (the same
`Health`, `Upload`s, environment, command line and resources) plus how Swarm may roll it; this module turns
that into one pulumi-docker `Service` and the Swarm objects it mounts:

- Uploads become Swarm configs (`docker.ServiceConfig`), mounted as read-only files at the same paths (mode
  0444, 0555 where executable). A Service has no `uploads`, and a config is the one object every node of a
  swarm can read, so a task on any node starts with its files. Configs are immutable: each is named after its
  content, so a new rendering is a new config, the service's update rolls the tasks onto it, and the old one is
  deleted only after the update (Pulumi's create-before-replace), never under a running task.
- Secret values (every environment value that is a Pulumi secret) become Swarm secrets, mounted as files under
  /run/secrets (mode 0400) and exported by a small wrapper (`render_secrets_env`) before the part's own
  entrypoint runs: the images read variables, the wrapper lets them read the files. A service's env is
  stored in the swarm's service spec, where `docker service inspect` shows it to anyone with the manager's API;
  a secret is not shown, and reaches only the tasks that mount it. Health checks run through the same wrapper,
  since Docker starts them with the container's env, not the entrypoint's.
- `convergeConfig` makes the provider's create and update wait until every task runs (a task with a health
  check is `running` only once healthy), and fail the update with the service's update status once Swarm has
  rolled it back (`failureAction: rollback`): `pulumi up` returns when the swarm has converged, or fails.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_docker as docker

from components.docker_common import Health, Upload, config_digest
from components.target import SwarmTarget
from model.preflight import CONFIG_LABEL, INSTANCE_LABEL, PART_LABEL
from model.readback import swarm_duration
from model.spec import ResourceSpec

# The guide's Docker Swarm section: update_config parallelism 2, delay 10s; restart_policy on-failure.
UPDATE_PARALLELISM = 2
UPDATE_DELAY_S = 10
# How long Swarm watches an updated task before it counts as a success: a task that crashes or turns unhealthy
# within it fails the update, which then rolls back. Two of the default health check's intervals and more.
MONITOR_S = 15
RESTART_CONDITION = "on-failure"
RESTART_DELAY_S = 5
# The provider's convergence poll (its own minimum is 5 s between reads).
CONVERGE_DELAY_S = 5
DEFAULT_CONVERGE_TIMEOUT_S = 180
SECRETS_DIR = "/run/secrets"
SECRETS_ENV_PATH = "/usr/local/bin/banyan-swarm-env"
# Swarm's default (0444) for configs; scripts need the execute bit. Secrets: root only (the wrapper runs as
# root and exports them before any entrypoint drops privileges).
CONFIG_MODE = 0o444
EXECUTABLE_MODE = 0o555
SECRET_MODE = 0o400
_MIB = 1024 * 1024
# Swarm's limit for config and secret names.
NAME_MAX = 64
_NANO_PER_MILLI = 1_000_000

Order = Literal["start-first", "stop-first"]


@dataclass(frozen=True)
class Rollout:
    """How Swarm replaces a service's tasks. `start-first` only where two copies of a task may run side by side
    (stateless parts): a data-tier instance on its own volume must stop before its successor starts."""

    order: Order
    parallelism: int = UPDATE_PARALLELISM

    @classmethod
    def stateless(cls) -> Rollout:
        return cls("start-first")

    @classmethod
    def stateful(cls) -> Rollout:
        # One task per service anyway; parallelism says so.
        return cls("stop-first", 1)


@dataclass(frozen=True)
class VolumeMount:
    """A named volume for one stateful instance. The node that runs the task creates it on first start (the
    local driver, labelled as the stack's), as `docker stack deploy` does: on a swarm the volume lives on that
    node, not on the manager the provider talks to, so no Volume resource stands for it. Nothing removes it:
    destroying the stack or replacing the service leaves the data in place."""

    name: str
    path: str


@dataclass(frozen=True)
class Port:
    """A port published through the swarm's routing mesh (`ingress`) or on the task's node only (`host`)."""

    target: int
    published: int
    mode: Literal["ingress", "host"] = "ingress"


def swarm_label_args(target: SwarmTarget, part: str, instance: str, cls: type,
                     extra: Mapping[str, pulumi.Input[str]] | None = None) -> list:  # type: ignore[type-arg]
    values = {**target.labels, PART_LABEL: part, INSTANCE_LABEL: instance, **(extra or {})}
    return [cls(label=k, value=v) for k, v in sorted(values.items())]


def nano_cpus(millis: int) -> int:
    return millis * _NANO_PER_MILLI


def render_secrets_env(names: Sequence[str], drain_s: int = 0) -> str:
    """The wrapper every task with secrets starts through: each secret file becomes the variable of its name,
    then the command runs. A missing file is an error, never an empty password.

    `drain_s`: on SIGTERM the command keeps running this long before it is sent SIGTERM itself. Swarm takes a
    stopping task out of DNS 2 s before it stops the container, and Nginx keeps a resolved name for its resolver's
    `valid` time: without the delay it would still send requests to a task that no longer answers (what a
    Kubernetes preStop sleep does for the same reason)."""
    listed = " ".join(sorted(names))
    run = 'exec "$@"\n' if not drain_s else f'''set +e
"$@" &
child=$!
trap 'sleep {drain_s}; kill -TERM "$child" 2>/dev/null' TERM INT
while :; do
    wait "$child"
    status=$?
    kill -0 "$child" 2>/dev/null || exit "$status"
done
'''
    return f"""#!/bin/sh
# Rendered by banyan (components/swarm_common.py): the Swarm secrets of this task as the variables its image reads.
set -eu
for name in {listed}; do
    file="{SECRETS_DIR}/$name"
    if [ ! -r "$file" ]; then
        echo "banyan-swarm-env: secret $file is missing or unreadable" >&2
        exit 1
    fi
    value="$(cat "$file")"
    export "$name=$value"
done
{run}"""


def wrapped_health(health: Health, wrapped: bool) -> tuple[str, ...]:
    """The health check's test, run through the secrets wrapper when the task has secrets."""
    if not wrapped:
        return health.test
    kind, *rest = health.test
    if kind == "CMD-SHELL":
        return ("CMD", "/bin/sh", SECRETS_ENV_PATH, "/bin/sh", "-c", *rest)
    if kind == "CMD":
        return ("CMD", "/bin/sh", SECRETS_ENV_PATH, *rest)
    raise ValueError(f"a health check starts with CMD or CMD-SHELL, not {kind!r}")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def object_name(target: SwarmTarget, what: str, digest: str) -> str:
    """A config's or secret's name: the stack's prefix, what it holds, its content's digest, within Swarm's 64
    characters (the digest is kept whole: it is what keeps two contents apart)."""
    head = f"{target.spec.project}-{target.spec.stack}-{what}"[:NAME_MAX - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def swarm_config(target: SwarmTarget, upload: Upload) -> docker.ServiceConfig:
    """One Swarm config per distinct (path, content), shared by the services that mount it. Named after its
    content (configs are immutable), the logical name too: a new content is a new config, created before the
    services that mount it are updated, and the old one deleted after them."""
    digest = hashlib.sha256(upload.content.encode()).hexdigest()[:12]
    key = f"{upload.path}@{digest}"
    if key not in target.configs:
        # The logical name must stay unique among configs of the same path with other contents (one per instance,
        # for Redis' per-node redis.conf): the digest is in it too.
        slug = _slug(upload.path)
        target.configs[key] = docker.ServiceConfig(
            f"{target.name}-config-{slug}-{digest}",
            name=object_name(target, _slug(upload.path.rsplit("/", 1)[-1]), digest),
            data=base64.b64encode(upload.content.encode()).decode(),
            labels=[docker.ServiceConfigLabelArgs(label=k, value=v) for k, v in sorted(target.labels.items())],
            opts=pulumi.ResourceOptions(parent=target.parent),
        )
    return target.configs[key]


def swarm_secret(target: SwarmTarget, part: str, key: str, value: pulumi.Input[str]) -> docker.Secret:
    """One Swarm secret per part and variable. Secrets are immutable and their names unique, so the name carries
    a digest of the value (a rotated password is a new secret, swapped in by the service's update); the digest
    reveals nothing usable of a generated password, so the name is not a secret."""
    cache = f"{part}/{key}"
    if cache not in target.secrets:
        digest = pulumi.Output.unsecret(pulumi.Output.from_input(value).apply(
            lambda v: hashlib.sha256(f"{key}\0{v}".encode()).hexdigest()[:12]))
        target.secrets[cache] = docker.Secret(
            f"{target.name}-secret-{_slug(part)}-{_slug(key)}",
            name=digest.apply(lambda d: object_name(target, f"{_slug(part)}-{_slug(key)}", d)),
            labels=[docker.SecretLabelArgs(label=k, value=v) for k, v in sorted(target.labels.items())],
            data=_base64(value),
            opts=pulumi.ResourceOptions(parent=target.parent),
        )
    return target.secrets[cache]


def _base64(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """The value as the provider takes a secret's data, and a secret whatever the value was."""
    encoded: pulumi.Output[str] = pulumi.Output.from_input(value).apply(lambda v: base64.b64encode(v.encode()).decode())
    return pulumi.Output.secret(encoded)


def _update_config(rollout: Rollout) -> docker.ServiceUpdateConfigArgs:
    return docker.ServiceUpdateConfigArgs(
        parallelism=rollout.parallelism,
        delay=swarm_duration(UPDATE_DELAY_S),
        order=rollout.order,
        # Swarm's default is to pause a failed update, leaving old and new tasks side by side.
        failure_action="rollback",
        monitor=swarm_duration(MONITOR_S),
        max_failure_ratio="0.0",
    )


def _rollback_config(rollout: Rollout) -> docker.ServiceRollbackConfigArgs:
    return docker.ServiceRollbackConfigArgs(
        parallelism=rollout.parallelism,
        # No delay: the tasks being replaced are the failed ones.
        delay=swarm_duration(0),
        order=rollout.order,
        failure_action="pause",
        monitor=swarm_duration(MONITOR_S),
        max_failure_ratio="0.0",
    )


def placement(target: SwarmTarget, instance: str) -> list[str]:
    """Where a data-tier instance may run: with its volume, always on the same node."""
    if target.spec.swarm.data_placement == "labels":
        return [f"node.labels.banyan.{instance}==true"]
    return ["node.role==manager"]


def service(
    name: str,
    *,
    target: SwarmTarget,
    instance: str,
    part: str,
    image: str,
    resources: ResourceSpec,
    health: Health,
    parent: pulumi.Resource,
    rollout: Rollout,
    replicas: int = 1,
    hostname: str | None = None,
    env: Mapping[str, pulumi.Input[str]] | None = None,
    command: Sequence[str] | None = None,
    entrypoint: Sequence[str] | None = None,
    uploads: Sequence[Upload] = (),
    mounts: Sequence[VolumeMount] = (),
    published: Sequence[Port] = (),
    constraints: Sequence[str] = (),
    max_per_node: int | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
    dnsrr: bool = False,
    secrets_as_files: bool = True,
    drain_s: int = 0,
    shm_size_mib: int | None = None,
    stop_timeout_s: int = 10,
    converge_timeout_s: int = DEFAULT_CONVERGE_TIMEOUT_S,
    labels: Mapping[str, pulumi.Input[str]] | None = None,
) -> docker.Service:
    """One Swarm service of the platform, reached on the overlay network by its instance name (the alias), with
    `replicas` tasks. `dnsrr`: the name resolves to the task's own address rather than a virtual IP (the data
    tier: cluster peers must see each other's real addresses, and nothing is published).

    `entrypoint` replaces the image's; with secrets the wrapper goes in front of it, so a part with secrets must
    name its entrypoint (or its whole `command`): the wrapper cannot know the image's own. Where neither is known
    (an application image run with its own entrypoint), `secrets_as_files=False` keeps every value in the env.
    `shm_size_mib`: a tmpfs of that size at /dev/shm (a service has no shm_size)."""
    env = dict(env or {})
    secret_keys = sorted(k for k, v in env.items() if not isinstance(v, str)) if secrets_as_files else []
    plain = {k: v for k, v in env.items() if k not in secret_keys}
    files = list(uploads)
    commands: list[str] | None = list(entrypoint) if entrypoint is not None else None
    args: list[str] | None = list(command) if command is not None else None
    if secret_keys:
        if commands is None and args is None:
            raise ValueError(f"{name}: a service with secrets needs an entrypoint or a command to run after the "
                             "secrets wrapper")
        files.append(Upload(SECRETS_ENV_PATH, render_secrets_env(secret_keys, drain_s), executable=True))
        if commands is None:
            # The command alone runs as the wrapper's arguments.
            commands, args = ["/bin/sh", SECRETS_ENV_PATH, *(args or [])], None
        else:
            commands = ["/bin/sh", SECRETS_ENV_PATH, *commands]
    configs = [
        docker.ServiceTaskSpecContainerSpecConfigArgs(
            config_id=swarm_config(target, u).id,
            config_name=swarm_config(target, u).name,
            file_name=u.path,
            file_mode=EXECUTABLE_MODE if u.executable else CONFIG_MODE,
            file_uid="0",
            file_gid="0",
        )
        for u in sorted(files, key=lambda u: u.path)
    ]
    secrets = [
        docker.ServiceTaskSpecContainerSpecSecretArgs(
            secret_id=swarm_secret(target, part, key, env[key]).id,
            secret_name=swarm_secret(target, part, key, env[key]).name,
            file_name=f"{SECRETS_DIR}/{key}",
            file_mode=SECRET_MODE,
            file_uid="0",
            file_gid="0",
        )
        for key in secret_keys
    ]
    digest_labels = {CONFIG_LABEL: config_digest(files, args, commands)}
    return docker.Service(
        name,
        name=target.service_name(instance),
        labels=swarm_label_args(target, part, instance, docker.ServiceLabelArgs, {**(labels or {}), **digest_labels}),
        mode=docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=replicas)),
        task_spec=docker.ServiceTaskSpecArgs(
            container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                image=image,
                hostname=hostname,
                commands=commands,
                args=args,
                env=plain or None,
                labels=swarm_label_args(target, part, instance, docker.ServiceTaskSpecContainerSpecLabelArgs),
                healthcheck=docker.ServiceTaskSpecContainerSpecHealthcheckArgs(
                    tests=list(wrapped_health(health, bool(secret_keys))),
                    interval=swarm_duration(health.interval_s),
                    timeout=swarm_duration(health.timeout_s),
                    retries=health.retries,
                    start_period=swarm_duration(health.start_period_s),
                ),
                configs=configs or None,
                secrets=secrets or None,
                mounts=[
                    docker.ServiceTaskSpecContainerSpecMountArgs(
                        type="volume",
                        source=m.name,
                        target=m.path,
                        volume_options=docker.ServiceTaskSpecContainerSpecMountVolumeOptionsArgs(
                            driver_name="local",
                            labels=swarm_label_args(target, part, instance,
                                                    docker.ServiceTaskSpecContainerSpecMountVolumeOptionsLabelArgs),
                        ),
                    )
                    for m in sorted(mounts, key=lambda m: m.path)
                ] + ([
                    docker.ServiceTaskSpecContainerSpecMountArgs(
                        type="tmpfs", target="/dev/shm",
                        tmpfs_options=docker.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(
                            size_bytes=shm_size_mib * _MIB),
                    )
                ] if shm_size_mib else []) or None,
                stop_grace_period=swarm_duration(stop_timeout_s),
            ),
            resources=docker.ServiceTaskSpecResourcesArgs(
                limits=docker.ServiceTaskSpecResourcesLimitsArgs(
                    nano_cpus=nano_cpus(resources.limits.cpu_millis),
                    memory_bytes=resources.limits.memory_mib * _MIB,
                ),
                # Swarm schedules by reservations: a task waits (pending) until a node has them free.
                reservation=docker.ServiceTaskSpecResourcesReservationArgs(
                    nano_cpus=nano_cpus(resources.requests.cpu_millis),
                    memory_bytes=resources.requests.memory_mib * _MIB,
                ),
            ),
            restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(
                condition=RESTART_CONDITION,
                delay=swarm_duration(RESTART_DELAY_S),
            ),
            placement=docker.ServiceTaskSpecPlacementArgs(
                constraints=sorted(constraints) or None, max_replicas=max_per_node,
            ) if constraints or max_per_node else None,
            networks_advanceds=[docker.ServiceTaskSpecNetworksAdvancedArgs(id=target.network.id, aliases=[instance])],
            log_driver=docker.ServiceTaskSpecLogDriverArgs(name="json-file",
                                                           options={"max-file": "3", "max-size": "10m"}),
        ),
        endpoint_spec=docker.ServiceEndpointSpecArgs(
            mode="dnsrr" if dnsrr else "vip",
            ports=[
                docker.ServiceEndpointSpecPortArgs(target_port=p.target, published_port=p.published,
                                                   publish_mode=p.mode, protocol="tcp")
                for p in sorted(published, key=lambda p: p.target)
            ] or None,
        ),
        update_config=_update_config(rollout),
        rollback_config=_rollback_config(rollout),
        converge_config=docker.ServiceConvergeConfigArgs(
            delay=swarm_duration(CONVERGE_DELAY_S),
            timeout=swarm_duration(converge_timeout_s),
        ),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )
