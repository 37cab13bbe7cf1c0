"""Typed stack configuration: the `banyan:*` keys of a Pulumi stack file, validated with pydantic."""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import json
import re
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from model import pins
from model.errors import ConfigProblem
from model.images import parse_image

NAMESPACE = "banyan"

Target = Literal["docker", "kubernetes", "swarm"]
TierName = Literal["small", "medium", "large"]
WorkloadKind = Literal["cpu", "io", "memory"]

# A DNS-1123 label: container, host and Kubernetes object names are all built from it.
DNS_LABEL = r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _check_image(ref: str) -> str:
    """An image must name a fixed version: a tag other than `latest`, and optionally a digest."""
    try:
        image = parse_image(ref)
    except ValueError:
        raise ValueError("must be an image reference such as 'postgres:16.9-alpine'") from None
    if image.tag is None:
        raise ValueError("must be pinned to a tag (e.g. 'redis:7.4.2-alpine'); an untagged image means 'latest'")
    if image.tag.lower() == "latest":
        raise ValueError("must be pinned to a version tag, not 'latest'")
    return ref


Image = Annotated[str, AfterValidator(_check_image)]


def _check_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("must be an IP address of the Docker host, such as 127.0.0.1 or 0.0.0.0") from None
    return value


HostAddress = Annotated[str, AfterValidator(_check_address)]

# Kubernetes' defaults, the values every distribution ships unless told otherwise.
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
_DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
# A label key: an optional DNS-subdomain prefix and a name of up to 63 characters; a value: the same name, or empty.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")


def _check_domain(value: str) -> str:
    if len(value) > 253 or not _DOMAIN.match(value):
        raise ValueError("must be a DNS domain in lower case, such as cluster.local (the kubelet's clusterDomain)")
    return value


def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise ValueError("must be an address block such as 10.0.0.1/32 or 192.168.0.0/24 (IPv4 or IPv6, "
                         "no host bits set)") from None
    return value


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            raise ValueError(f"label key {key!r} is not a Kubernetes label key; allowed: [prefix/]name, the name "
                             "up to 63 letters, digits, '-', '_' or '.' (e.g. app.kubernetes.io/name)")
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            raise ValueError(f"label value {value!r} (of {key}) is not a Kubernetes label value; allowed: up to 63 "
                             "letters, digits, '-', '_' or '.', starting and ending with a letter or digit")
    return labels


Domain = Annotated[str, AfterValidator(_check_domain)]
Cidr = Annotated[str, AfterValidator(_check_cidr)]
Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]


def _version_text(value: object) -> object:
    if isinstance(value, float | int) and not isinstance(value, bool):
        raise ValueError(f"write the version quoted, as text (YAML reads an unquoted {value} as a number, "
                         "and 3.10 as 3.1); allowed: 'major.minor' such as '3.13'")
    return value


def _number_input(value: object) -> object:
    """Numbers as YAML and JSON write them, and the digit strings `pulumi config set` stores; a flag is no number."""
    if isinstance(value, bool):
        raise PydanticCustomError("flag_as_number", "a flag (true/false) is not a number")
    return value


def _flag_input(value: object) -> object:
    """true and false, as YAML writes them or as `pulumi config set` stores them (a top-level value is always
    text); not 1, 0, yes or on, which pydantic would otherwise take for a flag."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise PydanticCustomError("flag_type", "allowed: true or false")


Int = Annotated[int, BeforeValidator(_number_input)]
Float = Annotated[float, BeforeValidator(_number_input)]
Bool = Annotated[bool, BeforeValidator(_flag_input)]

MajorMinor = Annotated[str, BeforeValidator(_version_text), StringConstraints(pattern=r"^\d+\.\d+$")]
Name = Annotated[str, StringConstraints(pattern=DNS_LABEL)]
# PostgreSQL identifiers that need no quoting anywhere (SQL, connection strings, pg_hba.conf).
PgIdent = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
Port = Annotated[Int, Field(ge=1, le=65535)]
Count = Annotated[Int, Field(ge=1, le=500)]
Millis = Annotated[Int, Field(ge=10, le=256_000)]
MiB = Annotated[Int, Field(ge=16, le=1_048_576)]


class Model(BaseModel):
    """Every config object: unknown keys are an error; each field's docstring is its reference entry."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Amount(Model):
    """CPU and memory of one instance."""

    cpu_millis: Millis | None = None
    """CPU in thousandths of a core (1000 = one core). Unset: the tier's value."""
    memory_mib: MiB | None = None
    """Memory in MiB. Unset: the tier's value."""


class ResourcesOverride(Model):
    """Overrides of the tier's per-instance limits and requests (reservations on Docker)."""

    limits: Amount = Amount()
    """Hard caps (Docker `--cpus`/`--memory`, Kubernetes limits)."""
    requests: Amount = Amount()
    """What is reserved (Docker CPU shares and memory reservation, Kubernetes requests)."""


class AutoscalingOverride(Model):
    """Overrides of the tier's HorizontalPodAutoscaler (Kubernetes only; Docker has no autoscaler)."""

    min_replicas: Count | None = None
    """Fewest replicas. Unset: the instance count."""
    max_replicas: Count | None = None
    """Most replicas; the connection budget plans for this many. Unset: the next tier's count (large: 2x)."""
    cpu_percent: Annotated[Int, Field(ge=1, le=100)] | None = None
    """Target average CPU utilisation. Unset: 70 (the guide)."""
    memory_percent: Annotated[Int, Field(ge=1, le=100)] | None = None
    """Target average memory utilisation. Unset: 80 (the guide)."""


class PoolOverride(Model):
    """Database connection pool of each instance."""

    min: Annotated[Int, Field(ge=0, le=1000)] | None = None
    """Connections kept open. Unset: 2 (the guide), at most max."""
    max: Annotated[Int, Field(ge=1, le=1000)] | None = None
    """Most connections per instance. Unset: by workload kind (cpu 2, io 10, memory 5; gateway 10)."""
    idle_timeout_ms: Annotated[Int, Field(ge=1000, le=3_600_000)] | None = None
    """Close idle connections after this long. Unset: 30000 (the guide)."""


class Workload(Model):
    """What the gateway and every business service share."""

    image: Image
    """Container image, pinned to a tag (never `latest`), optionally with `@sha256:` digest."""
    command: tuple[str, ...] | None = None
    """Command overriding the image's (e.g. for the placeholder images)."""
    instances: Count | None = None
    """Instance count (Kubernetes: the autoscaler's minimum). Unset: the tier's count."""
    health_path: Annotated[str, StringConstraints(pattern=r"^/[^\s]*$")] = "/health"
    """HTTP path that answers 2xx when an instance is ready."""
    liveness_path: Annotated[str, StringConstraints(pattern=r"^/[^\s]*$")] | None = None
    """Kubernetes: HTTP path that answers 2xx while the process works, checking no dependency (a failure restarts
    the pod). Unset: a TCP connect to the port. Never `health_path`: a database outage would restart every pod."""
    env: dict[Annotated[str, StringConstraints(pattern=ENV_NAME)], str] = {}
    """Extra environment variables. Mark the key secret (`pulumi config set --secret --path`) for secret values."""
    resources: ResourcesOverride = ResourcesOverride()
    """Per-instance limits and requests; see `resources`."""
    autoscaling: AutoscalingOverride = AutoscalingOverride()
    """Autoscaler bounds; see `autoscaling`."""
    pool: PoolOverride = PoolOverride()
    """Database pool per instance; see `pool`."""
    database_client: Bool = True
    """Whether instances open PostgreSQL connections (counted in the connection budget)."""


def _check_queue_name(value: str) -> str:
    if not value or len(value.encode()) > 255 or any(ord(ch) < 32 for ch in value):
        raise ValueError("must be a RabbitMQ queue name: 1-255 bytes, no control characters")
    return value


def _check_pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as err:
        raise ValueError(f"must be a regular expression over queue names ({err})") from None
    return value


QueueName = Annotated[str, AfterValidator(_check_queue_name)]
QueuePattern = Annotated[str, StringConstraints(min_length=1, max_length=1000), AfterValidator(_check_pattern)]


class QueueScalingConfig(Model):
    """Scaling on the depth of the service's queues. On Kubernetes KEDA does it (a ScaledObject: a RabbitMQ trigger,
    CPU and memory kept as further triggers) instead of banyan's HorizontalPodAutoscaler; its bounds are
    `autoscaling`'s, and the connection budget counts its maximum. Docker has no autoscaler: the plan gives the
    same arithmetic as advice (README, "Scaling on queue depth")."""

    enabled: Bool = False
    """Kubernetes: turn the queue-depth scaler on (KEDA is installed unless kubernetes.install_keda is false)."""
    queues: Annotated[tuple[QueueName, ...], Field(min_length=1, max_length=100)] | None = None
    """The queues whose messages (ready + unacknowledged, summed) count. Unset: the queues `pattern` matches."""
    pattern: QueuePattern | None = None
    """A regular expression over the vhost's queue names (matched by RabbitMQ's management API, at most 100
    queues). Unset, and no `queues`: the guide's names, `^service\\.<name>\\.commands\\.`."""
    queue_depth: Annotated[Int, Field(ge=1, le=100_000)] = 100
    """Messages waiting (ready) that start a scale-up at any replica count: the guide's Queue Depth < 100."""
    fallback_replicas: Count | None = None
    """Replicas while the queue depth cannot be read (3 failed reads in a row), or the current count if higher.
    Unset: the autoscaler's minimum."""

    @field_validator("pattern")
    @classmethod
    def _one_of(cls, pattern: str | None, info: ValidationInfo) -> str | None:
        if pattern is not None and info.data.get("queues") is not None:
            raise ValueError("queues and pattern both name the queues; allowed: one of the two")
        return pattern


class ServiceConfig(Workload):
    """One business service (a competing consumer of its RabbitMQ queues)."""

    name: Name
    """Service name, a DNS label; instances are `<name>-1`, `<name>-2`, ..."""
    port: Port = 3000
    """Port the service listens on (health checks and internal HTTP)."""
    workload: WorkloadKind = "io"
    """cpu, io or memory: picks prefetch and pool defaults (the guide's prefetch guidelines)."""
    prefetch: Annotated[Int, Field(ge=1, le=1000)] | None = None
    """RabbitMQ prefetch per instance. Unset: cpu 1, io 10, memory 1."""
    queue_scaling: QueueScalingConfig = QueueScalingConfig()
    """Scale on queue depth (KEDA on Kubernetes, the plan's advice on Docker); see `services[].queue_scaling`."""


class RateLimitConfig(Model):
    """The gateway's rate limit, shared across instances."""

    store: Literal["redis", "memory"] = "redis"
    """Where counters live: redis (shared by all instances) or memory (per instance)."""
    max: Annotated[Int, Field(ge=1)] = 100
    """Requests allowed per window and client."""
    window_ms: Annotated[Int, Field(ge=1000)] = 60_000
    """Window length in milliseconds."""


class CircuitBreakerConfig(Model):
    """The gateway's circuit breaker towards services."""

    failure_threshold: Annotated[Int, Field(ge=1)] = 5
    """Failures that open the circuit."""
    success_threshold: Annotated[Int, Field(ge=1)] = 2
    """Successes (half-open) that close it again."""
    recovery_timeout_ms: Annotated[Int, Field(ge=100)] = 30_000
    """Time open before trying again, in milliseconds."""


class GatewayConfig(Workload):
    """The API gateway behind Nginx."""

    port: Port = 3003
    """Port the gateway listens on (the guide's Nginx upstream uses 3003)."""
    capacity_rps: Annotated[Int, Field(ge=1)] = 1000
    """Measured requests/s one instance serves (the guide's example: 1000)."""
    expected_peak_rps: Annotated[Int, Field(ge=1)] | None = None
    """Expected peak load; when set, instances = ceil(peak / capacity x headroom)."""
    headroom: Annotated[Float, Field(ge=1.0, le=10.0)] = 2.0
    """Multiplier for peaks and failures (the guide: 1.5-2x)."""
    rate_limit: RateLimitConfig = RateLimitConfig()
    """See `gateway.rate_limit`."""
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    """See `gateway.circuit_breaker`."""
    database_client: Bool = False
    """Whether gateway instances open PostgreSQL connections (they talk to services over the bus)."""


# A bucket name as S3 allows it, then an optional path; an endpoint URL; an RFC 3339 time with its zone.
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*)?$")
_HTTP_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")


def _check_s3_uri(value: str) -> str:
    if not _S3_URI.match(value):
        raise ValueError("must be s3://<bucket>/<path>, the bucket 3-63 lower-case letters, digits, '.' or '-' "
                         "(e.g. s3://acme-backups/banyan)")
    return value


def _check_http_url(value: str) -> str:
    if not _HTTP_URL.match(value):
        raise ValueError("must be an http:// or https:// URL such as https://minio.example.com:9000")
    return value


def _check_timestamp(value: str) -> str:
    if not _TIMESTAMP.match(value):
        raise ValueError("must be an RFC 3339 time with its zone, such as 2026-12-01T10:30:00Z or "
                         "2026-12-01T11:30:00+01:00")
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("is not a real date and time (check the month, day and hour)") from None
    return value


S3Uri = Annotated[str, AfterValidator(_check_s3_uri)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
Timestamp = Annotated[str, AfterValidator(_check_timestamp)]


class BackupConfig(Model):
    """PostgreSQL backups: continuous WAL archiving plus scheduled full base backups, kept for a recovery window
    (Docker: pgBackRest; Kubernetes: CloudNativePG's Barman Cloud plugin). See the README, "Backups and restore"."""

    enabled: Bool | None = None
    """Archive WAL and take base backups. Unset: on for Kubernetes (prod), off for Docker (dev)."""
    repository: S3Uri | None = None
    ("Where backups go: `s3://bucket/path` (AWS S3 or an S3-compatible store, see `endpoint_url`). Unset: "
     "Docker keeps them on a local volume of their own; Kubernetes needs one.")
    endpoint_url: HttpUrl | None = None
    """The S3-compatible store's URL (MinIO, Ceph, ...). Unset: AWS S3."""
    region: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{2,32}$")] = "us-east-1"
    """The bucket's region (S3-compatible stores accept any)."""
    access_key_id: str | None = None
    ("S3 access key; set it as a secret (`pulumi config set --secret --path "
     "postgres.backup.access_key_id`). Unset on Kubernetes: the pods' IAM role (inheritFromIAMRole); "
     "Docker needs it with a repository.")
    secret_access_key: str | None = None
    """S3 secret key; set it as a secret, with `access_key_id`."""
    retention_days: Annotated[Int, Field(ge=1, le=3650)] = 7
    """Recovery window: every point in the last N days stays restorable; older backups and WAL are removed."""
    full_backup_hours: Annotated[Int, Field(ge=1, le=168)] = 24
    ("Hours between full base backups: 1, 2, 3, 4, 6, 8, 12, 24 or 168 (weekly). The staleness alert fires "
     "when the newest one is older than this plus a margin.")
    server_name: Name | None = None
    ("The name backups are kept under in the repository (pgBackRest's stanza, Barman's server name). "
     "Unset: the part's name, `postgres`. A Cluster restored on Kubernetes archives under a new one (e.g. "
     "postgres-2).")
    object_store_cidrs: tuple[Cidr, ...] | None = None
    ("Kubernetes: the object store's addresses, where the instance pods may connect (on the store's port: "
     "443, or the endpoint's). Unset: any address, on that port only.")
    max_wal_backlog_mib: Annotated[Int, Field(ge=64, le=1_048_576)] | None = None
    ("Docker: WAL that may wait for a failing archive before pgBackRest drops it (the primary's volume "
     "stays bounded; the alert says the archive has a gap). Unset: a quarter of postgres.storage_gib, at "
     "least 1024.")


class RestoreConfig(Model):
    """Bootstrap PostgreSQL from a backup instead of an empty database (see the README, "Restoring for real")."""

    enabled: Bool = False
    """Restore the primary from the backup repository (`postgres.backup`) when it starts on no data."""
    target_time: Timestamp | None = None
    """Recover up to this time (RFC 3339 with a zone, e.g. 2026-12-01T10:30:00Z). Unset: the latest point."""
    source_server: Name | None = None
    ("The server name the backups were archived under (Docker: pgBackRest's stanza; Kubernetes: Barman's "
     "serverName in the store). Unset: the part's name, `postgres`.")
    over_existing_data: Bool = False
    ("Replace data that already exists (Docker: moved aside beside it, not deleted). Without it the "
     "preview refuses a restore onto a stack whose primary already has data.")


class PostgresConfig(Model):
    """PostgreSQL: one primary and streaming read replicas."""

    image: Image = pins.POSTGRES.ref
    """Official postgres image, pinned (default: the pins table, model/pins.py)."""
    version: Annotated[Int, Field(ge=13, le=18)] = pins.POSTGRES_MAJOR
    """Major version of the server in `image`: config files carry only settings it reads."""
    replicas: Annotated[Int, Field(ge=0, le=15)] | None = None
    """Read replicas. Unset: small 0, medium 2, large 3."""
    max_connections: Annotated[Int, Field(ge=10, le=10_000)] | None = None
    """Server limit. Unset: derived so every client's pool stays under 80 % of it; too low is an error."""
    database: PgIdent = "banyan"
    """Database the services use."""
    user: PgIdent = "banyan"
    """Role the services log in as (its password is generated)."""
    storage_gib: Annotated[Int, Field(ge=1, le=65_536)] | None = None
    """Volume size per instance (Kubernetes). Unset: small 10, medium 50, large 200."""
    resources: ResourcesOverride = ResourcesOverride()
    """Per-instance limits and requests; see `resources`."""
    backup: BackupConfig = BackupConfig()
    """See `postgres.backup`."""
    restore: RestoreConfig = RestoreConfig()
    """See `postgres.restore`."""


class RabbitMQConfig(Model):
    """RabbitMQ: a cluster of nodes, quorum queues by default."""

    image: Image = pins.RABBITMQ.ref
    """Official rabbitmq image with the management plugin, pinned (default: the pins table, model/pins.py)."""
    version: MajorMinor = pins.RABBITMQ_SERIES
    """`major.minor` of the server in `image`: quorum as the default queue type needs 3.13+."""
    nodes: Count | None = None
    """Cluster nodes. Unset: small 1, medium 3, large 5."""
    persistence: Bool = True
    """Keep node data (queues, messages) on a volume per node."""
    allow_even_nodes: Bool = False
    """Accept an even node count (no gain in fault tolerance for quorum queues)."""
    default_queue_type: Literal["quorum", "classic"] = "quorum"
    """Queue type for queues declared without one."""
    management_host_port: Port | None = None
    """Docker only: publish node 1's management UI on the host's 127.0.0.1 at this port."""
    storage_gib: Annotated[Int, Field(ge=1, le=65_536)] | None = None
    """Volume size per node (Kubernetes). Unset: small 5, medium 20, large 50."""
    resources: ResourcesOverride = ResourcesOverride()
    """Per-node limits and requests; see `resources`."""


class RedisConfig(Model):
    """Redis: a standalone server (1 node) or a Redis Cluster."""

    image: Image = pins.REDIS.ref
    """Official redis image, pinned (default: the pins table, model/pins.py)."""
    version: MajorMinor = pins.REDIS_SERIES
    """`major.minor` of the server in `image`: config files carry only settings it reads."""
    nodes: Count | None = None
    """Nodes: 1 (standalone) or masters x (1 + replicas_per_master) with 3+ masters. Unset: 1, 3, 6."""
    replicas_per_master: Annotated[Int, Field(ge=0, le=5)] | None = None
    """Replicas of each master. Unset: small 0, medium 0, large 1."""
    persistence: Bool = True
    """Append-only file on the node's volume (data and nodes.conf survive restarts)."""
    storage_gib: Annotated[Int, Field(ge=1, le=65_536)] | None = None
    """Volume size per node (Kubernetes). Unset: small 2, medium 5, large 10."""
    resources: ResourcesOverride = ResourcesOverride()
    """Per-node limits and requests; see `resources`."""


class NginxConfig(Model):
    """Nginx, the load balancer in front of the gateway and the platform's only public port."""

    image: Image = pins.NGINX.ref
    """Official nginx image, pinned (default: the pins table, model/pins.py)."""
    port: Port = 8080
    """Public port: published on the Docker host, or the Kubernetes Service port."""
    publish_address: HostAddress = "127.0.0.1"
    """Docker only: the host address the public port is published on. 127.0.0.1 keeps the platform on this
    machine; 0.0.0.0 publishes it on every interface, over plain HTTP, past host firewalls (Docker's NAT rules
    bypass ufw and firewalld)."""
    instances: Count | None = None
    """Nginx instances (Docker: always 1). Unset: small 1, medium 2, large 3 on Kubernetes."""
    keepalive_connections: Annotated[Int, Field(ge=1, le=10_000)] = 64
    """Idle keep-alive connections to the gateways, per Nginx worker."""
    connect_timeout_s: Annotated[Int, Field(ge=1, le=300)] = 5
    """Seconds to connect to a gateway before trying the next."""
    read_timeout_s: Annotated[Int, Field(ge=1, le=3600)] = 60
    """Seconds between two reads from a gateway."""
    service_type: Literal["LoadBalancer", "NodePort", "ClusterIP"] = "LoadBalancer"
    """Kubernetes Service type in front of Nginx."""
    resources: ResourcesOverride = ResourcesOverride()
    """Per-instance limits and requests; see `resources`."""


class KubernetesConfig(Model):
    """Kubernetes target settings."""

    namespace: Name = "banyan"
    """Namespace the stack owns; everything is created in it."""
    kubeconfig: str | None = None
    """Path to a kubeconfig. Unset: the provider's default (KUBECONFIG, ~/.kube/config)."""
    context: str | None = None
    """kubeconfig context. Unset: the current context."""
    install_operators: Bool = True
    """Install the CloudNativePG and RabbitMQ operators (Helm, pinned); false where the cluster runs them."""
    install_keda: Bool = True
    """Install KEDA (Helm, pinned) when a service turns on queue_scaling; false where the cluster runs it."""
    keda_namespace: Name = "keda"
    """Namespace of KEDA's operator (where it is installed, or where the cluster runs it)."""
    keda_operator_labels: Labels = {"app.kubernetes.io/name": "keda-operator"}
    """Labels of KEDA's operator pods (its chart's): the one peer admitted to RabbitMQ's management port for
    queue depths."""
    storage_class: str | None = None
    """StorageClass for volumes. Unset: the cluster's default."""
    cluster_domain: Domain = DEFAULT_CLUSTER_DOMAIN
    """The cluster's DNS domain (the kubelet's clusterDomain): fully qualified names end in it."""
    dns_service: Name = "kube-dns"
    """The cluster DNS Service (CoreDNS keeps the name kube-dns): Nginx's resolver."""
    dns_namespace: Name = "kube-system"
    """Namespace of the cluster DNS Service and pods: every pod's DNS egress goes there."""
    dns_pod_labels: Labels = {"k8s-app": "kube-dns"}
    """Labels of the cluster DNS pods (CoreDNS and kube-dns both carry k8s-app: kube-dns); `{}`: every pod there."""
    api_server_cidrs: tuple[Cidr, ...] | None = None
    """The API server's addresses (`kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes`),
    where CloudNativePG's and RabbitMQ's pods may connect on ports 443 and 6443. Unset: any address, on those
    ports only."""


def _check_webhook(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
        raise ValueError("must be an http:// or https:// URL, such as http://alert-relay.internal:8080/hook")
    return value


WebhookUrl = Annotated[str, AfterValidator(_check_webhook)]


class MonitoringConfig(Model):
    """The monitoring part (components/monitoring): metrics of every part, and alerts at the Scalability Guide's
    thresholds. Docker: Prometheus, Alertmanager and exporters as containers of the stack. Kubernetes:
    PodMonitors and a PrometheusRule for a Prometheus Operator; and, enabled or not, who may scrape the
    metrics ports (CloudNativePG's exporter 9187, PgBouncer's 9127, RabbitMQ's Prometheus port 15692)."""

    enabled: Bool = False
    """Deploy the monitoring part. Off by default: on Docker it adds containers and gives Nginx a second access
    log (its container is replaced once); on Kubernetes its objects need the Prometheus Operator's CRDs, and it adds
    a sidecar to the Redis pods (and, with `mtail_image`, the Nginx pods), which roll once, one pod at a time."""
    namespace: Name = "monitoring"
    """Namespace the scrapers run in (Kubernetes)."""
    pod_labels: Labels = {"app.kubernetes.io/name": "prometheus"}
    """Labels of the scraper pods there (the Prometheus Operator's Prometheus pods carry these); `{}`: every pod."""
    monitor_labels: Labels = {}
    """Kubernetes: labels on the stack's PodMonitors and PrometheusRule, for a Prometheus that selects them by label
    (kube-prometheus-stack's default selects `release: <its release name>`); `{}`: none."""
    install_operator: Bool = False
    """Kubernetes: install the Prometheus Operator and a Prometheus (kube-prometheus-stack, Helm, pinned) into
    `namespace`. false: the cluster runs one, which selects the stack's monitors and rules by their labels."""
    prometheus_port: Port = 9090
    """Docker only: the host port of Prometheus' UI and API, published on 127.0.0.1 only."""
    scrape_interval_s: Annotated[Int, Field(ge=1, le=300)] = 15
    """Seconds between two scrapes of every target (Docker's Prometheus; Kubernetes' monitors)."""
    evaluation_interval_s: Annotated[Int, Field(ge=1, le=300)] = 15
    """Seconds between two evaluations of the alert rules (Docker's Prometheus)."""
    retention_days: Annotated[Int, Field(ge=1, le=3650)] = 15
    """Docker only: days of metrics Prometheus keeps on its volume."""
    alertmanager_webhook_url: WebhookUrl | None = None
    """Where Alertmanager sends firing and resolved alerts (its webhook receiver, Docker). Unset: no receiver;
    alerts are only shown in Prometheus' and Alertmanager's UIs."""
    mtail_image: Image | None = None
    """Image of mtail (Google's log-to-metrics tool), which turns Nginx's access log into request, status and
    latency metrics (p50/p95/p99). Its authors publish no image: build one (scripts/build-images builds
    banyan-local/mtail from Debian's package) and name it here. Unset: no Nginx metrics, and no latency and
    error-rate alerts (a warning says so)."""


class DockerConfig(Model):
    """Docker target settings: the one host the stack runs on."""

    host_cpu_millis: Annotated[Int, Field(ge=1000, le=1_024_000)] = 8000
    """The host's CPUs in thousandths (8000 = 8 cores): a container's CPU limit above it is refused (Docker refuses
    one above the host's CPU count); CPU reservations adding up to more are a warning."""
    host_memory_mib: Annotated[Int, Field(ge=512, le=16_777_216)] = 16_384
    """The host's memory in MiB (16384 = 16 GiB): memory limits adding up to more are a warning (what the
    containers may use, the host cannot give; the kernel's OOM killer stops containers first)."""


class SwarmConfig(Model):
    """Docker Swarm target settings (components/target.py, components/*/swarm.py)."""

    data_placement: Literal["manager", "labels"] = "manager"
    ("Where each data-tier instance (its own single-replica service) runs, so it always finds its volume: manager "
     "(every instance on the swarm's manager: one host, right for a swarm with one manager) or labels (instance "
     "`<i>` only on nodes labelled `banyan.<i>=true`, e.g. `docker node update --label-add "
     "banyan.postgres-replica-1=true node-2`; label exactly one node per instance).")
    publish_mode: Literal["ingress", "host"] = "ingress"
    ("How Nginx's port is published: ingress (the routing mesh: the port answers on every node, whichever node "
     "runs Nginx; Nginx rolls start-first; needs IPVS in the nodes' kernels) or host (only on the nodes that run "
     "an Nginx task, at most one per node, rolled stop-first; keeps the client's address).")


class StackConfig(Model):
    """The whole `banyan:*` namespace of a stack file."""

    target: Target
    """docker (one host, pulumi-docker), kubernetes (pulumi-kubernetes) or swarm (Docker Swarm services)."""
    tier: TierName
    """small, medium or large: the guide's resource planning table."""
    protect: Bool = False
    """Protect stateful resources (volumes, database and broker clusters) from deletion."""
    preflight: Bool = True
    ("Before registering anything, read what the stack deploys to and refuse what it cannot survive. Docker: the "
     "local engine (the unix socket of docker:host or DOCKER_HOST, else /var/run/docker.sock): host ports another "
     "container publishes, RabbitMQ/Redis shrinks. Kubernetes: the live RabbitmqCluster, Redis StatefulSet and "
     "CloudNativePG Cluster, through the provider's kubeconfig: RabbitMQ node-count decreases, Redis node-count or "
     "mode changes, volume shrinks. Set false where what is read is not what the provider deploys to.")
    require_digests: Bool = False
    ("Every image (the parts' and every service's) must carry an @sha256: digest, so every host runs the same "
     "bits; refused at preview otherwise, and the policy pack's banyan-image-digests rule checks what is "
     "deployed (the CloudNativePG operand included).")
    services: Annotated[tuple[ServiceConfig, ...], Field(min_length=1)]
    """The business services; see `services[]`."""
    gateway: GatewayConfig
    """See `gateway`."""
    postgres: PostgresConfig = PostgresConfig()
    """See `postgres`."""
    rabbitmq: RabbitMQConfig = RabbitMQConfig()
    """See `rabbitmq`."""
    redis: RedisConfig = RedisConfig()
    """See `redis`."""
    nginx: NginxConfig = NginxConfig()
    """See `nginx`."""
    swarm: SwarmConfig = SwarmConfig()
    """See `swarm`."""
    kubernetes: KubernetesConfig = KubernetesConfig()
    """See `kubernetes`."""
    monitoring: MonitoringConfig = MonitoringConfig()
    """See `monitoring`."""
    docker: DockerConfig = DockerConfig()
    """See `docker`."""

    @field_validator("services")
    @classmethod
    def _unique_names(cls, services: tuple[ServiceConfig, ...]) -> tuple[ServiceConfig, ...]:
        seen: set[str] = set()
        for svc in services:
            if svc.name in seen:
                raise ValueError(f"service name {svc.name!r} is used twice; names must be unique")
            seen.add(svc.name)
        return services


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif path:
            path += f".{part}"
        else:
            path = str(part)
    return f"{NAMESPACE}:{path}"


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # pydantic adds the validator's name (e.g. "function-after[_check_image()]") to locations.
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The config model an annotation holds, through `| None` and `tuple[...]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _walk(loc: tuple[int | str, ...]) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model that holds the last key of `loc`, and that key's field (None where loc leaves the models)."""
    model: type[BaseModel] | None = StackConfig
    info: FieldInfo | None = None
    for i, part in enumerate(loc):
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return (model, None) if i == len(loc) - 1 else (None, None)
        info = model.model_fields[part]
        if i < len(loc) - 1:
            model = _model_in(info.annotation)
    return model, info


def field_bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    """A numeric field's (lowest, highest) allowed value, None where it has no bound: the one home of a limit."""
    items: list[Any] = list(info.metadata)
    for arg in typing.get_args(info.annotation):
        items += list(getattr(arg, "__metadata__", ()))
    low: float | None = None
    high: float | None = None
    for item in items:
        for meta in getattr(item, "metadata", None) or [item]:
            if isinstance(meta, annotated_types.Ge):
                low = float(meta.ge)  # type: ignore[arg-type]
            elif isinstance(meta, annotated_types.Le):
                high = float(meta.le)  # type: ignore[arg-type]
    return low, high


def bounds(model: type[BaseModel], field: str) -> tuple[int, int]:
    """(lowest, highest) of a bounded integer field, for checking a computed value against the given one's limit."""
    low, high = field_bounds(model.model_fields[field])
    assert low is not None and high is not None, f"{model.__name__}.{field} is not bounded on both sides"
    return int(low), int(high)


def _range_text(info: FieldInfo | None) -> str:
    low, high = field_bounds(info) if info is not None else (None, None)
    if low is not None and high is not None:
        return f" {low:g}-{high:g}"
    return f" >= {low:g}" if low is not None else ""


def _near(name: str, candidates: typing.Iterable[str]) -> str | None:
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return found[0] if found else None


def _allowed(error: Mapping[str, Any], loc: tuple[int | str, ...]) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "extra_forbidden":
        model, _ = _walk(loc)
        near = _near(str(loc[-1]), model.model_fields) if model is not None else None
        return "this key is not known here" + (f"; did you mean {_key_path((*loc[:-1], near))}?" if near else "")
    if kind == "literal_error":
        return f"allowed: {ctx.get('expected')}"
    if kind == "missing":
        return "this key is required"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "flag_as_number":
        _, info = _walk(loc)
        whole = info is not None and "float" not in str(info.annotation)
        return f"a flag (true/false) is not a number; allowed: a {'whole ' if whole else ''}number{_range_text(info)}"
    msg = str(error["msg"])
    # Only the sentence's first letter: a pattern, a key or a value quoted in it stays exactly as written.
    return msg[:1].lower() + msg[1:] if msg[1:2].islower() else msg


def _problems(exc: ValidationError, hinted: set[str]) -> list[ConfigProblem]:
    """One problem per cause: an error inside an item or object drops the one its parent reports because of it
    (pydantic counts a tuple whose every item failed as empty), and a missing key the user wrote elsewhere (a
    near-miss namespace or name, hinted at there) is not reported again."""
    errors = [(_clean_loc(tuple(e["loc"])), e) for e in exc.errors()]
    locs = [loc for loc, _ in errors]
    problems = []
    for loc, error in errors:
        if any(len(other) > len(loc) and other[:len(loc)] == loc for other in locs):
            continue
        if error["type"] == "extra_forbidden":
            model, _ = _walk(loc)
            near = _near(str(loc[-1]), model.model_fields) if model is not None else None
            if near:
                hinted.add(_key_path((*loc[:-1], near)))
        missing = error["type"] == "missing"
        value = error.get("input") if not missing else None
        problems.append(ConfigProblem(_key_path(loc), value, _allowed(error, loc), missing=missing))
    return [p for p in problems if not (p.missing and p.key in hinted)]


# Namespaces this program leaves to others: the providers' own keys (`docker:host`, `kubernetes:context`).
PROVIDER_NAMESPACES = frozenset({"docker", "kubernetes", "random", "pulumi"})


def _namespace_hint(key: str, value: Any) -> ConfigProblem | None:
    """A banyan key under a misspelt namespace, or under none (our readers of stack files pass one on as written;
    the engine qualifies keys itself), is never read: say which key it looks like instead of only 'not set'."""
    namespace, sep, name = key.rpartition(":")
    top = re.split(r"[.\[]", name, maxsplit=1)[0]
    if top not in StackConfig.model_fields or namespace in PROVIDER_NAMESPACES:
        return None
    if not sep:
        return ConfigProblem(key, value, f"a key without a namespace is never read here; did you mean "
                                         f"{NAMESPACE}:{name}?")
    if namespace.lower() == NAMESPACE or difflib.SequenceMatcher(None, namespace.lower(), NAMESPACE).ratio() >= 0.6:
        return ConfigProblem(key, value, f"the namespace {namespace!r} is not {NAMESPACE!r}, so this key is never "
                                         f"read; did you mean {NAMESPACE}:{name}?")
    return None


def decode_raw_config(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[ConfigProblem], list[ConfigProblem]]:
    """Turn Pulumi's flat `banyan:key -> string` map into nested data, and the problems found on the way: values
    that are not valid structured data, and (apart) keys outside the namespace that look like banyan keys.

    Structured values (objects and lists) reach the program as JSON strings; scalars stay
    strings, and numbers and flags are read from them ("3", "true") where one is wanted.
    Keys of other namespaces (`docker:host`, `kubernetes:context`) belong to providers.
    """
    data: dict[str, Any] = {}
    problems: list[ConfigProblem] = []
    hints: list[ConfigProblem] = []
    prefix = f"{NAMESPACE}:"
    for key, value in raw.items():
        if not key.startswith(prefix):
            hint = _namespace_hint(key, value)
            if hint is not None:
                hints.append(hint)
            continue
        name = key[len(prefix):]
        if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                problems.append(ConfigProblem(key, value, f"must be valid structured YAML/JSON ({err.msg})"))
                continue
        data[name] = value
    return data, problems, hints


def parse_config(raw: Mapping[str, Any]) -> tuple[StackConfig | None, list[ConfigProblem]]:
    """Validate a flat Pulumi config map; returns the model or every problem found."""
    data, problems, hints = decode_raw_config(raw)
    if problems:
        return None, hints + problems
    hinted = {f"{NAMESPACE}:{h.key.rpartition(':')[2]}" for h in hints}
    try:
        config = StackConfig.model_validate(data)
    except ValidationError as exc:
        return None, hints + _problems(exc, hinted)
    return (None, hints) if hints else (config, [])
