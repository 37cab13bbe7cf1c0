"""The checks behind banyan's policy pack, as pure functions: plain resource data in, findings out.

`__main__.py` wraps each one in a Pulumi policy; the tests call them directly on rendered stacks. Nothing
here imports Pulumi, so the rules run (and are tested) without an engine. What holds data and how an image
reference parses come from the project's `model` (standard library only), as the plan has them.

What a rule sees is what the engine hands a policy pack: a resource's type token (`docker:index/container:
Container`, `kubernetes:apps/v1:Deployment`), its properties under their wire names (camelCase for Docker,
the Kubernetes object itself for Kubernetes) with secrets already unwrapped, its `protect` option and its
URN. During `pulumi preview`, a value computed from something not created yet is one of Pulumi's "unknown"
sentinels (below); a rule never guesses past one: it reports what it could not see in `Report.unknown`.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from model.images import REQUIRE_DIGESTS_PROP, parse_image
from model.stateful import CNPG_GROUP, RABBITMQ_GROUP, is_stateful_type, kubernetes_kind

# Pulumi's wire sentinels for values not known during a preview (one per kind: bool, number, string,
# array, asset, archive, object). The same strings pulumi.runtime.rpc and pulumi_policy.proxy use.
UNKNOWN_VALUES = frozenset({
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",
    "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9",
    "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
    "030794c1-ac77-496b-92df-f27374a8bd58",
    "e48ece36-62e2-4504-bad9-02848725956a",
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
})

DOCKER_CONTAINER = "docker:index/container:Container"
DOCKER_SERVICE = "docker:index/service:Service"
DOCKER_SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"
DOCKER_REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"

# Kubernetes kinds whose pods come from a pod template, and where that template's pod spec sits.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# Partial pod templates the operators merge into the pods they make (no image required there).
OPERATOR_POD_SPEC_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    (CNPG_GROUP, "Pooler"): ("spec", "template", "spec"),
    (RABBITMQ_GROUP, "RabbitmqCluster"): ("spec", "override", "statefulSet", "spec", "template", "spec"),
}

DEFAULT_PROTECTED_STACKS = ("prod",)
# The only part whose ports may be reached from beyond the host / cluster: the load balancer.
DEFAULT_PUBLIC_PARTS = ("nginx",)
# Guide, Target Metrics: "Database Connections < 80% max".
DEFAULT_BUDGET_PERCENT = 80
# PostgreSQL's own default, what a server runs with when nothing sets max_connections.
POSTGRES_DEFAULT_MAX_CONNECTIONS = 100
# PgBouncer's defaults for the pool sizes a Pooler does not set.
PGBOUNCER_DEFAULT_POOL_SIZE = 20
PGBOUNCER_DEFAULT_RESERVE_POOL_SIZE = 0
POOL_MAX_ENV = "DATABASE_POOL_MAX"


def is_unknown(value: Any) -> bool:
    return isinstance(value, str) and value in UNKNOWN_VALUES


@dataclass(frozen=True)
class Resource:
    """One resource as a policy sees it (inputs for resource policies, outputs for stack policies)."""

    type: str
    props: Mapping[str, Any]
    urn: str = ""
    name: str = ""
    protect: bool = False


@dataclass(frozen=True)
class Finding:
    message: str
    urn: str | None = None


@dataclass
class Report:
    """Violations found, and what could not be judged because it was unknown (a preview)."""

    violations: list[Finding] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    # Set when the rule has nothing to judge in this stack (e.g. no database server in it).
    not_applicable: str | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    def violation(self, message: str, urn: str | None = None) -> None:
        self.violations.append(Finding(message, urn))



# ---- reading resources --------------------------------------------------------------------------------


def stack_of(urn: str) -> str | None:
    """The stack in `urn:pulumi:<stack>::<project>::<type>::<name>`."""
    head = urn.split("::", 1)[0].split(":")
    return head[2] if len(head) == 3 and head[:2] == ["urn", "pulumi"] and head[2] else None


def dig(value: Any, path: Sequence[str]) -> Any:
    """value[path[0]][path[1]]...; None where a step is missing (an unknown sentinel is returned as is)."""
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []


def _where(resource: Resource) -> str:
    return resource.name or resource.urn or resource.type


def _object_name(props: Mapping[str, Any]) -> str:
    name = dig(props, ("metadata", "name"))
    return name if isinstance(name, str) and not is_unknown(name) else ""


def pod_specs(resource: Resource) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
    """(path, pod spec, complete) of every pod template the resource carries.

    `complete` is false for the partial templates operators merge into the pods they make: there a
    container may leave the image to the operator."""
    kind = kubernetes_kind(resource.type)
    if kind is None:
        return
    path = POD_SPEC_PATHS.get(kind[1]) if kind[0] in ("core", "apps", "batch") else None
    complete = path is not None
    if path is None:
        path = OPERATOR_POD_SPEC_PATHS.get(kind)
    if path is None:
        return
    spec = dig(resource.props, path)
    if isinstance(spec, Mapping):
        yield ".".join(path), spec, complete


def containers(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(field[index], container) for containers and init containers."""
    for key in ("initContainers", "containers"):
        for i, container in enumerate(_items(pod_spec.get(key))):
            yield f"{key}[{i}]", container


def _labels(props: Mapping[str, Any]) -> dict[str, str]:
    """Docker labels ([{label, value}]) or Kubernetes metadata.labels, as a dict."""
    labels = props.get("labels")
    if isinstance(labels, Sequence) and not isinstance(labels, str):
        return {str(x.get("label")): str(x.get("value")) for x in labels if isinstance(x, Mapping)}
    return {str(k): str(v) for k, v in _mapping(dig(props, ("metadata", "labels"))).items()}


# ---- images -------------------------------------------------------------------------------------------


def image_problem(ref: Any) -> str | None:
    """Why an image reference is not pinned (None when it is): no tag and no digest, or `latest`."""
    if not isinstance(ref, str) or not ref.strip():
        return "no image reference"
    ref = ref.strip()
    if ref.startswith("sha256:"):
        return None  # an image id: content-addressed
    try:
        image = parse_image(ref)
    except ValueError as exc:
        return str(exc)
    if image.tag is not None and image.tag.lower() == "latest":
        return f"image {ref!r} uses the `latest` tag"
    if not image.pinned:
        return f"image {ref!r} has no tag (Docker pulls `latest`)"
    return None


def _check_image(subject: Resource, ref: Any, where: str, out: Report, *, optional: bool = False) -> None:
    if ref is None and optional:
        return
    if is_unknown(ref):
        out.unknown.append(f"{_where(subject)}: {where}")
        return
    problem = image_problem(ref)
    if problem:
        out.violation(f"{_where(subject)}: {where}: {problem}; pin a version tag (optionally with an @sha256: digest)")


def image_refs(resource: Resource) -> Iterator[tuple[str, Any, bool]]:
    """(where, reference, optional) of every image the resource names: Docker containers and images,
    Kubernetes pod templates, and the CloudNativePG / RabbitMQ operator clusters (whose image, when set, is the
    database's own). `optional`: the field may be left to an operator."""
    props = resource.props
    if resource.type == DOCKER_CONTAINER:
        yield "image", props.get("image"), False
    elif resource.type == DOCKER_SERVICE:
        yield "taskSpec.containerSpec.image", dig(props, ("taskSpec", "containerSpec", "image")), False
    elif resource.type == DOCKER_REMOTE_IMAGE:
        yield "name", props.get("name"), False
    kind = kubernetes_kind(resource.type)
    if kind == (CNPG_GROUP, "Cluster"):
        # Unset, the operator runs its own pinned default for its version.
        yield "spec.imageName", dig(props, ("spec", "imageName")), True
    elif kind == (RABBITMQ_GROUP, "RabbitmqCluster"):
        yield "spec.image", dig(props, ("spec", "image")), True
    for path, pod_spec, complete in pod_specs(resource):
        if is_unknown(pod_spec.get("containers")):
            yield f"{path}.containers", pod_spec.get("containers"), False
            continue
        for where, container in containers(pod_spec):
            image = container.get("image") if isinstance(container, Mapping) else None
            yield f"{path}.{where}.image", image, not complete


def check_image_pinned(resource: Resource) -> Report:
    """No `latest` or untagged image anywhere `image_refs` looks."""
    out = Report()
    for where, ref, optional in image_refs(resource):
        _check_image(resource, ref, where, out, optional=optional)
    return out


def digests_required(resources: Sequence[Resource], stacks: Sequence[str] = ()) -> bool:
    """The stack asked for digests (banyan:require_digests marks its root component), or the pack's config
    names the stack."""
    return any(r.props.get(REQUIRE_DIGESTS_PROP) is True or (bool(stacks) and stack_of(r.urn) in stacks)
               for r in resources)


def check_image_digests(resources: Sequence[Resource], stacks: Sequence[str] = ()) -> Report:
    """Where digests are required (`digests_required`), every image reference carries `@sha256:` (or is an image
    id): a tag alone can name other bits on another host, or tomorrow."""
    out = Report()
    if not digests_required(resources, stacks):
        out.not_applicable = ("the stack does not set banyan:require_digests and the pack's config does not "
                              "name it")
        return out
    for resource in resources:
        for where, ref, optional in image_refs(resource):
            if ref is None and optional:
                continue
            if is_unknown(ref):
                out.unknown.append(f"{_where(resource)}: {where}")
                continue
            if isinstance(ref, str) and ref.strip().startswith("sha256:"):
                continue
            try:
                digest = parse_image(str(ref).strip()).digest
            except ValueError as exc:
                out.violation(f"{_where(resource)}: {where}: {exc}", resource.urn or None)
                continue
            if digest is None:
                out.violation(f"{_where(resource)}: {where}: image {ref!r} has no digest; digests are required in "
                              "this stack: pin it as repo:tag@sha256:<digest>", resource.urn or None)
    return out


# ---- CPU and memory limits ----------------------------------------------------------------------------


def _positive(value: Any) -> bool | None:
    """True for a number (or numeric string) above zero; None when unknown."""
    if is_unknown(value):
        return None
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def _k8s_limits(resources: Any, where: str, subject: Resource, out: Report) -> None:
    if is_unknown(resources):
        out.unknown.append(f"{_where(subject)}: {where}")
        return
    limits = dig(resources, ("limits",))
    if is_unknown(limits):
        out.unknown.append(f"{_where(subject)}: {where}.limits")
        return
    missing = [k for k in ("cpu", "memory") if not isinstance(limits, Mapping) or limits.get(k) in (None, "")]
    if missing:
        out.violation(f"{_where(subject)}: {where}.limits has no {' and no '.join(missing)} limit")


def check_resource_limits(resource: Resource) -> Report:
    """CPU and memory limits on every container: Docker `memory` and `cpus` (or `cpuQuota`); Kubernetes
    `resources.limits.cpu` and `.memory` on every container and init container of a pod template, and on
    the pods the CloudNativePG and RabbitMQ operators make (`spec.resources`)."""
    out = Report()
    props = resource.props
    who = _where(resource)
    if resource.type == DOCKER_CONTAINER:
        memory = _positive(props.get("memory"))
        cpu = (_positive(props.get("cpus")), _positive(props.get("cpuQuota")))
        if memory is None:
            out.unknown.append(f"{who}: memory")
        elif not memory:
            out.violation(f"{who}: no memory limit (`memory`, MiB)")
        if True in cpu:
            pass
        elif None in cpu:
            out.unknown.append(f"{who}: cpus / cpuQuota")
        else:
            out.violation(f"{who}: no CPU limit (`cpus` or `cpuQuota`)")
        return out
    if resource.type == DOCKER_SERVICE:
        # Swarm: taskSpec.resources.limits, per task.
        limits = dig(props, ("taskSpec", "resources", "limits"))
        if is_unknown(limits):
            out.unknown.append(f"{who}: taskSpec.resources.limits")
            return out
        for key, what in (("memoryBytes", "memory"), ("nanoCpus", "CPU")):
            value = _positive(_mapping(limits).get(key))
            if value is None:
                out.unknown.append(f"{who}: taskSpec.resources.limits.{key}")
            elif not value:
                out.violation(f"{who}: no {what} limit (taskSpec.resources.limits.{key})")
        return out
    kind = kubernetes_kind(resource.type)
    if kind in ((CNPG_GROUP, "Cluster"), (RABBITMQ_GROUP, "RabbitmqCluster")):
        # The operators size their pods from spec.resources; the override template only adds to it.
        _k8s_limits(dig(props, ("spec", "resources")), "spec.resources", resource, out)
        return out
    if kind == (CNPG_GROUP, "Pooler") and not _items(dig(props, ("spec", "template", "spec", "containers"))):
        out.violation(f"{who}: spec.template.spec.containers sets no resources for the pgbouncer container, "
                      "so its pods run without limits")
    for path, pod_spec, _complete in pod_specs(resource):
        for where, container in containers(pod_spec):
            resources = container.get("resources") if isinstance(container, Mapping) else None
            _k8s_limits(resources, f"{path}.{where}.resources", resource, out)
    return out


# ---- protection of what holds data --------------------------------------------------------------------


is_stateful = is_stateful_type


def check_protected(resource: Resource, protected_stacks: Sequence[str] = DEFAULT_PROTECTED_STACKS,
                    stack: str | None = None) -> Report:
    """In the protected stacks (prod), every resource that holds data carries `protect`: a `pulumi
    destroy`, a rename or a replacement then stops instead of deleting the data. The stack comes from the
    resource's URN unless given."""
    out = Report()
    stack = stack or stack_of(resource.urn)
    if stack is None or stack not in protected_stacks or not is_stateful(resource.type):
        return out
    if not resource.protect:
        out.violation(f"{_where(resource)} ({resource.type}) holds data but is not protected in stack {stack!r}; "
                      "set banyan:protect: true (resource option protect=True)")
    return out


# ---- public ports -------------------------------------------------------------------------------------


def _loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.strip("[]")).is_loopback
    except ValueError:
        return ip == "localhost"


def _exempt(props: Mapping[str, Any], public_parts: Sequence[str]) -> bool:
    labels = _labels(props)
    names = {props.get("name"), _object_name(props), labels.get("banyan.part"), labels.get("app.kubernetes.io/name")}
    return any(n in public_parts for n in names if isinstance(n, str))


def check_public_ports(resource: Resource, public_parts: Sequence[str] = DEFAULT_PUBLIC_PARTS) -> Report:
    """Nothing but the load balancer is reachable from beyond the host or cluster.

    Docker: a published port on any address but loopback (no `ip` means 0.0.0.0), `publishAllPorts`, or
    the host's network. Kubernetes: a Service of type LoadBalancer or NodePort or with externalIPs, a
    container hostPort, or hostNetwork. The load balancer is the container / object named (or labelled
    `banyan.part` / `app.kubernetes.io/name`) after one of `public_parts`."""
    out = Report()
    props = resource.props
    if _exempt(props, public_parts):
        return out
    who = _where(resource)
    if resource.type == DOCKER_SERVICE:
        # Swarm publishes on every interface of every node (routing mesh or host mode alike): no loopback.
        ports = dig(props, ("endpointSpec", "ports"))
        if is_unknown(ports):
            out.unknown.append(f"{who}: endpointSpec.ports")
        for port in _items(ports):
            if isinstance(port, Mapping):
                out.violation(f"{who}: port {_num(port.get('targetPort'))} is published on every node's "
                              f"addresses as {_num(port.get('publishedPort'))}; only the load balancer may be")
        return out
    if resource.type == DOCKER_CONTAINER:
        ports = props.get("ports")
        if is_unknown(ports):
            out.unknown.append(f"{who}: ports")
        for i, port in enumerate(_items(ports)):
            if not isinstance(port, Mapping):
                continue
            ip = port.get("ip") or "0.0.0.0"
            if is_unknown(ip):
                out.unknown.append(f"{who}: ports[{i}].ip")
            elif not _loopback(str(ip)):
                out.violation(f"{who}: port {_num(port.get('internal'))} is published on "
                              f"{ip}:{_num(port.get('external'))}; only the load balancer may be; "
                              "bind it to 127.0.0.1")
        if props.get("publishAllPorts") is True:
            out.violation(f"{who}: publishAllPorts publishes every exposed port on all addresses")
        if props.get("networkMode") == "host":
            out.violation(f"{who}: networkMode host puts every listening port on the host's addresses")
        return out
    kind = kubernetes_kind(resource.type)
    if kind == ("core", "Service"):
        service_type = dig(props, ("spec", "type"))
        if is_unknown(service_type):
            out.unknown.append(f"{who}: spec.type")
        elif service_type in ("LoadBalancer", "NodePort"):
            out.violation(f"{who}: a Service of type {service_type} is reachable from outside the cluster; "
                          "only the load balancer's may be; use ClusterIP")
        if _items(dig(props, ("spec", "externalIPs"))):
            out.violation(f"{who}: spec.externalIPs exposes the Service outside the cluster")
    for path, pod_spec, _complete in pod_specs(resource):
        if pod_spec.get("hostNetwork") is True:
            out.violation(f"{who}: {path}.hostNetwork puts the pods' ports on the node's addresses")
        for where, container in containers(pod_spec):
            for j, port in enumerate(_items(_mapping(container).get("ports"))):
                if isinstance(port, Mapping) and port.get("hostPort"):
                    out.violation(f"{who}: {path}.{where}.ports[{j}] claims hostPort "
                                  f"{_num(port.get('hostPort'))} on the node")
    return out


# ---- the connection budget ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server and the max_connections it runs with."""

    name: str
    max_connections: int
    urn: str
    source: str


@dataclass(frozen=True)
class Client:
    name: str
    instances: int
    pool_max: int

    @property
    def connections(self) -> int:
        return self.instances * self.pool_max


def _int(value: Any) -> int | None:
    """A whole number from an int, a whole float (numbers reach a policy as protobuf doubles) or a numeric
    string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _num(value: Any) -> str:
    whole = _int(value)
    return str(whole) if whole is not None else str(value)


def _env_list(envs: Any) -> tuple[dict[str, str], bool]:
    """Docker `envs` (["K=V", ...]) as a dict, and whether some entry was unknown."""
    found: dict[str, str] = {}
    unknown = is_unknown(envs)
    for entry in _items(envs):
        if is_unknown(entry) or not isinstance(entry, str):
            unknown = True
            continue
        key, _, value = entry.partition("=")
        found[key] = value
    return found, unknown


_CONF_MAX_CONNECTIONS = re.compile(r"^\s*max_connections\s*=?\s*'?(\d+)'?\s*(?:#.*)?$", re.MULTILINE)


def _command_max_connections(command: Any) -> int | None:
    """`-c max_connections=N` (or `--max_connections=N`) on a postgres command line; the last one wins."""
    found: int | None = None
    args = [a for a in _items(command) if isinstance(a, str)]
    for i, arg in enumerate(args):
        setting = None
        if arg == "-c" and i + 1 < len(args):
            setting = args[i + 1]
        elif (arg.startswith("-c") and len(arg) > 2) or arg.startswith("--"):
            setting = arg[2:]
        if setting:
            key, _, value = setting.partition("=")
            if key.strip().replace("-", "_") == "max_connections" and _int(value) is not None:
                found = _int(value)
    return found


def _is_postgres_container(props: Mapping[str, Any]) -> bool:
    uploads = [u for u in _items(props.get("uploads")) if isinstance(u, Mapping)]
    if any(str(u.get("file", "")).endswith("/postgresql.conf") for u in uploads):
        return True
    image = props.get("image")
    repository = image.partition("@")[0].rsplit("/", 1)[-1].partition(":")[0] if isinstance(image, str) else ""
    command = _items(props.get("command"))
    return repository in ("postgres", "postgresql") or (bool(command) and command[0] == "postgres")


def _docker_server(resource: Resource) -> Server:
    props = resource.props
    name = str(props.get("name") or resource.name)
    from_command = _command_max_connections(props.get("command"))
    if from_command is not None:
        return Server(name, from_command, resource.urn, "-c max_connections on its command line")
    for upload in _items(props.get("uploads")):
        if isinstance(upload, Mapping) and str(upload.get("file", "")).endswith("/postgresql.conf"):
            content = upload.get("content")
            values = _CONF_MAX_CONNECTIONS.findall(content) if isinstance(content, str) else []
            if values:  # PostgreSQL takes the last setting in the file
                return Server(name, int(values[-1]), resource.urn, f"max_connections in {upload.get('file')}")
    return Server(name, POSTGRES_DEFAULT_MAX_CONNECTIONS, resource.urn, "PostgreSQL's default (nothing sets it)")


def _swarm_server(resource: Resource, configs: Mapping[str, Any]) -> Server | None:
    """A Swarm service running PostgreSQL (it mounts a postgresql.conf config, or names max_connections on its
    command line), with the max_connections its files set; None for any other service."""
    spec = _mapping(dig(resource.props, ("taskSpec", "containerSpec")))
    name = str(resource.props.get("name") or resource.name)
    from_command = _command_max_connections([*_items(spec.get("commands")), *_items(spec.get("args"))])
    if from_command is not None:
        return Server(name, from_command, resource.urn, "-c max_connections on its command line")
    for ref in _items(spec.get("configs")):
        if isinstance(ref, Mapping) and str(ref.get("fileName", "")).endswith("/postgresql.conf"):
            data = configs.get(str(ref.get("configName")))
            try:
                content = base64.b64decode(data).decode() if isinstance(data, str) else ""
            except ValueError:
                content = ""
            values = _CONF_MAX_CONNECTIONS.findall(content)
            if values:
                return Server(name, int(values[-1]), resource.urn, f"max_connections in {ref.get('fileName')}")
            return Server(name, POSTGRES_DEFAULT_MAX_CONNECTIONS, resource.urn, "PostgreSQL's default")
    return None


def _pooler_server_connections(props: Mapping[str, Any]) -> int | None:
    """Server connections one Pooler may open: instances x (default_pool_size + reserve_pool_size),
    capped by max_db_connections (one user and database behind the pooler, as the platform has)."""
    params = _mapping(dig(props, ("spec", "pgbouncer", "parameters")))
    instances = dig(props, ("spec", "instances"))
    values = [instances, *params.values()]
    if any(is_unknown(v) for v in values):
        return None
    pool = _int(params.get("default_pool_size", PGBOUNCER_DEFAULT_POOL_SIZE)) or 0
    reserve = _int(params.get("reserve_pool_size", PGBOUNCER_DEFAULT_RESERVE_POOL_SIZE)) or 0
    per_instance = pool + reserve
    cap = _int(params.get("max_db_connections", 0)) or 0
    if cap > 0:
        per_instance = min(per_instance, cap)
    count = 1 if instances is None else _int(instances)  # the operator's default: one instance
    return None if count is None else count * per_instance


@dataclass
class Budget:
    """What the budget rule read from a stack: servers, clients, poolers by cluster name, and what it
    could not read."""

    servers: list[Server]
    clients: list[Client]
    poolers: dict[str, list[tuple[str, int]]]
    report: Report

    @property
    def total(self) -> int:
        return sum(c.connections for c in self.clients)


KEDA_DEFAULT_MAX_REPLICAS = 100  # a ScaledObject without maxReplicaCount (KEDA's defaultHPAMaxReplicas)


def read_budget(resources: Sequence[Resource]) -> Budget:
    """The servers, clients and poolers `check_connection_budget` judges (see there for where each
    number comes from)."""
    out = Report()
    servers: list[Server] = []
    clients: list[Client] = []
    poolers: dict[str, list[tuple[str, int]]] = {}
    autoscaled: dict[tuple[Any, str, str], Any] = {}
    workloads: list[Resource] = []
    # Docker: one container per instance, counted per part (`user-service-1`, `-2`, ... are user-service).
    docker_clients: dict[tuple[str, int], int] = {}
    # Swarm: the configs services mount, by name (a service names the configs it mounts).
    swarm_configs = {str(r.props.get("name")): r.props.get("data")
                     for r in resources if r.type == DOCKER_SERVICE_CONFIG}
    for r in resources:
        props = r.props
        kind = kubernetes_kind(r.type)
        if r.type == DOCKER_SERVICE:
            server = _swarm_server(r, swarm_configs)
            if server is not None:
                servers.append(server)
                continue
            env = dig(props, ("taskSpec", "containerSpec", "env"))
            replicas = dig(props, ("mode", "replicated", "replicas"))
            name = str(props.get("name") or r.name)
            if is_unknown(env) or is_unknown(replicas):
                out.unknown.append(f"{name}: taskSpec.containerSpec.env / mode.replicated.replicas")
                continue
            pool_max = _mapping(env).get(POOL_MAX_ENV)
            if pool_max is None:
                continue
            if _int(pool_max) is None:
                out.violation(f"{name}: {POOL_MAX_ENV}={pool_max!r} is not a whole number", r.urn)
                continue
            part = (_labels(props).get("banyan.part") or name, _int(pool_max) or 0)
            docker_clients[part] = docker_clients.get(part, 0) + (1 if replicas is None else _int(replicas) or 0)
        elif r.type == DOCKER_CONTAINER:
            if _is_postgres_container(props):
                servers.append(_docker_server(r))
                continue
            env, unknown = _env_list(props.get("envs"))
            pool_max = env.get(POOL_MAX_ENV)
            name = str(props.get("name") or r.name)
            if pool_max is None:
                if unknown:
                    out.unknown.append(f"{name}: envs (is it a database client, with which pool max?)")
            elif _int(pool_max) is None:
                out.violation(f"{name}: {POOL_MAX_ENV}={pool_max!r} is not a whole number", r.urn)
            else:
                part = (_labels(props).get("banyan.part") or re.sub(r"-\d+$", "", name), _int(pool_max) or 0)
                docker_clients[part] = docker_clients.get(part, 0) + 1
        elif kind == (CNPG_GROUP, "Cluster"):
            value = dig(props, ("spec", "postgresql", "parameters", "max_connections"))
            name = _object_name(props) or r.name
            if is_unknown(value):
                out.unknown.append(f"{name}: spec.postgresql.parameters.max_connections")
            elif value is None:
                servers.append(Server(name, POSTGRES_DEFAULT_MAX_CONNECTIONS, r.urn, "PostgreSQL's default"))
            elif _int(value) is None:
                out.violation(f"{name}: max_connections {value!r} is not a whole number", r.urn)
            else:
                servers.append(Server(name, _int(value) or 0, r.urn, "spec.postgresql.parameters.max_connections"))
        elif kind == (CNPG_GROUP, "Pooler"):
            cluster = dig(props, ("spec", "cluster", "name"))
            name = _object_name(props) or r.name
            count = _pooler_server_connections(props)
            if count is None or is_unknown(cluster):
                out.unknown.append(f"{name}: spec.instances / spec.pgbouncer.parameters")
            else:
                poolers.setdefault(str(cluster), []).append((name, count))
        elif kind == ("autoscaling", "HorizontalPodAutoscaler"):
            target = _mapping(dig(props, ("spec", "scaleTargetRef")))
            key = (dig(props, ("metadata", "namespace")), str(target.get("kind")), str(target.get("name")))
            autoscaled[key] = dig(props, ("spec", "maxReplicas"))
        elif kind == ("keda.sh", "ScaledObject"):
            # KEDA makes its own HPA from this: its maxReplicaCount (KEDA's default 100) bounds the Deployment.
            target = _mapping(dig(props, ("spec", "scaleTargetRef")))
            key = (dig(props, ("metadata", "namespace")), str(target.get("kind") or "Deployment"),
                   str(target.get("name")))
            found = dig(props, ("spec", "maxReplicaCount"))
            autoscaled[key] = KEDA_DEFAULT_MAX_REPLICAS if found is None else found
        elif kind is not None:
            workloads.append(r)
    clients += [Client(part, count, pool_max) for (part, pool_max), count in sorted(docker_clients.items())]
    for r in workloads:
        clients.extend(_kubernetes_clients(r, autoscaled, out))
    return Budget(servers, clients, poolers, out)


def check_connection_budget(resources: Sequence[Resource], limit_percent: int = DEFAULT_BUDGET_PERCENT) -> Report:
    """Every database client's largest possible instance count times its pool max stays under
    `limit_percent` of each PostgreSQL server's max_connections (and so do the PgBouncer poolers').

    What it reads, since a policy sees resources and not the stack's outputs:
    - servers: Docker containers running PostgreSQL (max_connections from `-c max_connections=` on the
      command line, else the uploaded postgresql.conf, else PostgreSQL's default 100); CloudNativePG
      Clusters (`spec.postgresql.parameters.max_connections`, else 100);
    - clients: every container with a `DATABASE_POOL_MAX` environment variable. Docker: one instance per
      container. Kubernetes: the workload's HorizontalPodAutoscaler `maxReplicas` (or KEDA ScaledObject
      `maxReplicaCount`), else `spec.replicas`,
      else 1; a pool max from `valueFrom` (a Secret or ConfigMap) cannot be read and is reported unknown;
    - poolers: CloudNativePG Poolers, instances x their PgBouncer server pool.
    Which server a client talks to is in its (secret) DATABASE_URL, so every client is counted against
    every server: right for the platform's one primary and its replicas, conservative beyond that.
    During a preview, a container's env that depends on a password not generated yet is unknown; the
    rule then reports what it could not see instead of passing or failing."""
    budget = read_budget(resources)
    servers, clients, poolers, out = budget.servers, budget.clients, budget.poolers, budget.report
    for server in servers:
        # Whole numbers on both sides: total < max_connections x percent / 100, as model/capacity.py has it.
        usable = server.max_connections * limit_percent / 100
        total = budget.total
        if clients and not total * 100 < server.max_connections * limit_percent:
            terms = " + ".join(f"{c.name} {c.instances} x {c.pool_max}" for c in clients)
            out.violation(
                f"connection budget exceeded on {server.name}: {terms} = {total} connections; {limit_percent}% "
                f"of max_connections {server.max_connections} ({server.source}) = {usable:g}, and {total} is not "
                f"under it; raise max_connections or lower instances / pool max", server.urn)
        pooled = poolers.get(server.name, [])
        pooled_total = sum(n for _, n in pooled)
        if pooled and not pooled_total * 100 < server.max_connections * limit_percent:
            terms = " + ".join(f"{name} {n}" for name, n in pooled)
            out.violation(
                f"PgBouncer poolers of {server.name} may open {terms} = {pooled_total} server connections; "
                f"{limit_percent}% of max_connections {server.max_connections} = {usable:g}", server.urn)
    if not servers and not out.unknown:
        out.not_applicable = "no PostgreSQL server in the stack to hold the clients' connections against"
    return out


def _kubernetes_clients(resource: Resource, autoscaled: Mapping[tuple[Any, str, str], Any],
                        out: Report) -> list[Client]:
    found: list[Client] = []
    kind = kubernetes_kind(resource.type)
    for _path, pod_spec, complete in pod_specs(resource):
        if not complete or kind is None:
            continue
        name = _object_name(resource.props) or resource.name
        pool_total = 0
        for _field, container in containers(pod_spec):
            for env in _items(_mapping(container).get("env")):
                if not isinstance(env, Mapping) or env.get("name") != POOL_MAX_ENV:
                    continue
                value = env.get("value")
                if value is None or is_unknown(value):
                    out.unknown.append(f"{name}: {POOL_MAX_ENV} (from valueFrom or unknown)")
                elif _int(value) is None:
                    out.violation(f"{name}: {POOL_MAX_ENV}={value!r} is not a whole number", resource.urn)
                else:
                    pool_total += _int(value) or 0
        if not pool_total:
            continue
        namespace = dig(resource.props, ("metadata", "namespace"))
        instances: Any = autoscaled.get((namespace, kind[1], name))
        if instances is None:
            instances = dig(resource.props, ("spec", "replicas"))
            instances = 1 if instances is None else instances
        if is_unknown(instances) or _int(instances) is None:
            out.unknown.append(f"{name}: replicas / autoscaler maxReplicas")
            continue
        found.append(Client(name, _int(instances) or 0, pool_total))
    return found


# ---- Swarm services: converge, roll back ---------------------------------------------------------------------


def check_swarm_rollout(resource: Resource) -> Report:
    """Every Swarm service waits for convergence (`convergeConfig`: without it `pulumi up` returns as soon as Swarm
    accepted the spec), rolls a failed update back (`updateConfig.failureAction: rollback`: Swarm's default pauses
    it, old and new tasks side by side) and restarts failed tasks (`taskSpec.restartPolicy.condition`)."""
    out = Report()
    if resource.type != DOCKER_SERVICE:
        return out
    props, who = resource.props, _where(resource)
    converge = props.get("convergeConfig")
    if is_unknown(converge):
        out.unknown.append(f"{who}: convergeConfig")
    elif not isinstance(converge, Mapping):
        out.violation(f"{who}: no convergeConfig: `pulumi up` would not wait for the service's tasks to run")
    action = dig(props, ("updateConfig", "failureAction"))
    if is_unknown(action):
        out.unknown.append(f"{who}: updateConfig.failureAction")
    elif action != "rollback":
        out.violation(f"{who}: updateConfig.failureAction is {action or 'unset (pause)'}; a failed update must roll "
                      "back (`rollback`)")
    condition = dig(props, ("taskSpec", "restartPolicy", "condition"))
    if is_unknown(condition):
        out.unknown.append(f"{who}: taskSpec.restartPolicy.condition")
    elif condition not in ("on-failure", "any"):
        out.violation(f"{who}: taskSpec.restartPolicy.condition is {condition or 'unset'}; failed tasks must be "
                      "restarted (`on-failure`)")
    return out
