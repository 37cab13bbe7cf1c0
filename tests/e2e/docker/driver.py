"""Create a rendered Docker stack on a real Docker engine the way pulumi-docker creates it, and remove it.

    images = local_images(Engine())
    rendering = render_stack("dev", set={"tier": "small", **local_stack_sets(images)})
    with StackDriver(rendering, image_mapping(rendering, images)) as stack:
        stack.up()                      # network, volumes, images, then containers by dependency
        stack.address("redis-node-1")   # its IP on the stack's network, reachable from the host

The record's `docker:index/...` resources are created in the order of their recorded dependencies,
independent ones in parallel, as the Pulumi engine schedules them. A container is created, its uploads
copied in (one tar per file, named by its absolute path, mode 0644 or 0744, extracted at `/`), then it
is started; with `wait: true` the driver polls until Docker reports it healthy, with `attach: true` it
waits for the exit and keeps the exit code and logs. No image is pulled: every image reference of the
stack must be mapped to a local tag. Every input the record carries must be one this driver implements;
anything else stops it before the first request, so a new input can never be silently dropped.

The Docker engine's HTTP API is called directly (stdlib http.client over the socket, the API version
negotiated with the engine): the docker CLI's flags cannot express a CMD-form health check or a
multi-element entrypoint, and these are sent exactly as rendered.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import socket
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from testkit import RecordedResource, Rendering, Unknown, unwrap, version_sets

NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/remoteImage:RemoteImage"
TYPES = (NETWORK, VOLUME, IMAGE, CONTAINER)

# Request bodies follow this API version; older engines are refused, newer ones negotiated down to it.
MIN_API = (1, 41)
MAX_API = (1, 47)
# The provider polls a container's health once a second; half of that costs nothing here.
POLL_S = 0.5
# pulumi-docker's schema defaults.
DEFAULT_WAIT_TIMEOUT_S = 60
DEFAULT_ATTACH_TIMEOUT_S = 600
# Resource operations in flight at once, as scripts/up runs `pulumi up` (PULUMI_PARALLEL=64; Pulumi's own default
# is 4 per CPU, which queues containers behind others' health waits: benchmarks/README.md, "Deploy time").
UP_PARALLEL = 64
# Repository names of the official images, and the local part that stands in for each.
OFFICIAL_TO_PART = {"postgres": "postgres", "rabbitmq": "rabbitmq", "redis": "redis", "nginx": "nginx",
                    "python": "python",
                    # The monitoring part: prom/prometheus, prom/alertmanager,
                    # quay.io/prometheuscommunity/postgres-exporter, oliver006/redis_exporter, and an mtail image
                    # (the stack names one: mtail's authors publish none).
                    "prometheus": "prometheus", "alertmanager": "alertmanager",
                    "postgres-exporter": "postgres-exporter", "redis_exporter": "redis-exporter", "mtail": "mtail",
                    # ghcr.io/google/cadvisor: scripts/build-cadvisor's build of the same release.
                    "cadvisor": "cadvisor"}

# Inputs each resource type may carry. Provider-side knobs (waits, timeouts, teardown) are implemented
# too; anything not listed is refused when the plan is made.
_INPUTS = {
    NETWORK: {"name", "driver", "labels", "internal", "attachable", "options", "checkDuplicate"},
    VOLUME: {"name", "driver", "driverOpts", "labels"},
    IMAGE: {"name", "keepLocally"},
    CONTAINER: {
        "name", "image", "hostname", "command", "entrypoints", "envs", "labels", "user", "workingDir",
        "restart", "maxRetryCount", "memory", "memoryReservation", "memorySwap", "cpus", "cpuShares",
        "shmSize", "healthcheck", "networksAdvanced", "uploads", "volumes", "ports", "logDriver", "logOpts",
        "stopSignal", "stopTimeout", "destroyGraceSeconds", "removeVolumes", "wait", "waitTimeout", "start",
        "attach", "logs", "mustRun",
    },
}
_HEALTH_INPUTS = {"tests", "interval", "timeout", "startPeriod", "retries"}
_UPLOAD_INPUTS = {"file", "content", "contentBase64", "executable"}
_VOLUME_INPUTS = {"volumeName", "hostPath", "containerPath", "readOnly"}
_PORT_INPUTS = {"internal", "external", "ip", "protocol"}
_NETWORK_INPUTS = {"name", "aliases"}


class EngineError(Exception):
    """The engine refused a request (its own message), or could not be reached."""

    def __init__(self, what: str, status: int | None, message: str) -> None:
        super().__init__(f"{what}: {status or 'no answer'} {message}".strip())
        self.status = status


class StackError(Exception):
    """A resource did not come up as the record asks (unhealthy, exited, timed out): what the provider
    would fail `pulumi up` with, plus what the engine says about the container."""


class UnsupportedInputError(ValueError):
    """The record carries an input this driver does not implement."""


# ---- the engine's API ---------------------------------------------------------------------------------

class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._socket_path)
        self.sock = sock


class Engine:
    """A Docker engine at DOCKER_HOST (unix:// or plain tcp://), default /var/run/docker.sock."""

    def __init__(self, host: str | None = None, *, timeout_s: float = 30.0) -> None:
        self.host = host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        parsed = urllib.parse.urlsplit(self.host)
        if parsed.scheme not in ("unix", "tcp", "http"):
            raise ValueError(f"DOCKER_HOST {self.host!r}: only unix:// and plain tcp:// are supported here")
        self._parsed = parsed
        self.timeout_s = timeout_s
        self._api: str | None = None
        self._lock = threading.Lock()

    def _connect(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._parsed.scheme == "unix":
            return _UnixConnection(self._parsed.path, timeout)
        return http.client.HTTPConnection(self._parsed.hostname or "localhost", self._parsed.port or 2375,
                                          timeout=timeout)

    def request(self, method: str, path: str, *, query: Mapping[str, object] | None = None,
                body: bytes | None = None, content_type: str = "application/json",
                timeout_s: float | None = None, versioned: bool = True) -> tuple[int, bytes]:
        """One request on a fresh connection (thread-safe); the status and the whole body."""
        url = (f"/v{self.api_version()}" if versioned else "") + path
        if query:
            url += "?" + urllib.parse.urlencode({k: _query_value(v) for k, v in query.items()})
        conn = self._connect(self.timeout_s if timeout_s is None else timeout_s)
        try:
            headers = {"Content-Type": content_type} if body is not None else {}
            conn.request(method, url, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except OSError as exc:
            raise EngineError(f"{method} {path}", None, f"({self.host}: {exc})") from exc
        finally:
            conn.close()

    def call(self, method: str, path: str, *, query: Mapping[str, object] | None = None,
             json_body: object = None, data: bytes | None = None, content_type: str = "application/json",
             timeout_s: float | None = None, missing_ok: bool = False) -> Any:
        """A request whose answer must be a success; its JSON (or None). 404 with missing_ok is None."""
        body = data if data is not None else (json.dumps(json_body).encode() if json_body is not None else None)
        status, raw = self.request(method, path, query=query, body=body, content_type=content_type,
                                   timeout_s=timeout_s)
        if status == 404 and missing_ok:
            return None
        if status >= 400:
            raise EngineError(f"{method} {path}", status, _message(raw))
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def api_version(self) -> str:
        """The engine's API version, capped at the newest these request bodies are written for."""
        with self._lock:
            if self._api is None:
                status, raw = self.request("GET", "/version", versioned=False)
                if status != 200:
                    raise EngineError("GET /version", status, _message(raw))
                server = tuple(int(x) for x in json.loads(raw)["ApiVersion"].split("."))
                if server < MIN_API:
                    raise EngineError("GET /version", status, f"engine API {server} is older than "
                                      f"{'.'.join(map(str, MIN_API))}, which this driver needs")
                self._api = ".".join(map(str, min(server, MAX_API)))
            return self._api

    def ping(self) -> None:
        status, raw = self.request("GET", "/_ping", versioned=False, timeout_s=5)
        if status != 200:
            raise EngineError("GET /_ping", status, _message(raw))


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _message(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("message", raw.decode(errors="replace"))).strip()
    except (ValueError, AttributeError):
        return raw.decode(errors="replace").strip()


def demux(raw: bytes) -> tuple[bytes, bytes]:
    """stdout and stderr of a non-TTY stream; a TTY stream is all stdout."""
    frames = _frames(raw)
    if frames is None:
        return raw, b""
    return (b"".join(c for k, c in frames if k != 2), b"".join(c for k, c in frames if k == 2))


def engine_unavailable(engine: Engine | None = None) -> str | None:
    """Why no Docker engine answers here, or None when one does."""
    try:
        (engine or Engine()).ping()
    except (EngineError, ValueError) as exc:
        return str(exc)
    return None


# ---- input conversions, as the provider makes them ----------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def duration_ns(text: str) -> int:
    """Go's time.ParseDuration (what the provider parses health-check durations with), in nanoseconds."""
    if text in ("0", ""):
        return 0
    pos, total = 0, Decimal(0)
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += Decimal(match[1]) * _NS[match[2]]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"not a Go duration: {text!r}")
    return int(total)


def nano_cpus(text: str) -> int:
    """`cpus` as Docker reads it (a decimal number of CPUs, at most nanosecond precision)."""
    try:
        value = Decimal(text) * 10**9
    except InvalidOperation as exc:
        raise ValueError(f"cpus {text!r} is not a number") from exc
    if value != value.to_integral_value():
        raise ValueError(f"cpus {text!r} is too precise")
    return int(value)


def _mib(value: int) -> int:
    return int(value) * 1024 * 1024


def _labels(items: Sequence[Mapping[str, str]] | None) -> dict[str, str]:
    return {item["label"]: item["value"] for item in items or []}


def upload_content(upload: Mapping[str, Any]) -> bytes:
    if "contentBase64" in upload:
        return base64.b64decode(upload["contentBase64"])
    return str(upload["content"]).encode()


def upload_tar(upload: Mapping[str, Any]) -> bytes:
    """The provider's archive for one upload: a single entry named by the absolute path, extracted at `/`."""
    content = upload_content(upload)
    info = tarfile.TarInfo(name=str(upload["file"]))
    info.size = len(content)
    info.mode = 0o744 if upload.get("executable") else 0o644
    info.mtime = int(time.time())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _check_keys(what: str, value: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise UnsupportedInputError(f"{what}: inputs {unknown} are not implemented by this driver")


# ---- the plan ----------------------------------------------------------------------------------------

@dataclass
class Step:
    """One resource to create. `inputs` are plain (secrets unwrapped) and never shown."""

    resource: RecordedResource
    inputs: dict[str, Any] = field(repr=False)
    deps: tuple[str, ...]

    @property
    def label(self) -> str:
        kind = self.resource.type.rsplit(":", 1)[-1]
        return f"{kind} {self.inputs.get('name', self.resource.name)}"

    @property
    def instance(self) -> str:
        """A container's instance (`banyan.instance` label, else its host name, else its name): what the
        queries below take, whatever the container name's scoping."""
        labels = _labels(self.inputs.get("labels"))
        return str(labels.get("banyan.instance") or self.inputs.get("hostname") or self.inputs["name"])


def parts(*names: str) -> Callable[[RecordedResource], bool]:
    """Select containers by their `banyan.part` label (api-gateway, user-service, postgres, redis, ...)."""
    wanted = set(names)

    def select(r: RecordedResource) -> bool:
        return _labels(unwrap(r.inputs).get("labels")).get("banyan.part") in wanted

    return select


def target(instance: str) -> Callable[[Step], bool]:
    """`pulumi up --target` of one container, by its instance, for StackDriver.update(only=...)."""
    return lambda step: step.instance == instance


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Created:
    type: str
    name: str
    id: str
    inputs: dict[str, Any] = field(repr=False)


# Container inputs an update changes without a replacement (the provider's schema: no ForceNew). The first set is
# sent as one ContainerUpdate (resourceDockerContainerUpdate); the second only changes the provider's state.
IN_PLACE_SENT = frozenset({"restart", "maxRetryCount", "cpuShares", "memory", "memoryReservation", "memorySwap"})
IN_PLACE = IN_PLACE_SENT | {"start", "wait", "waitTimeout", "attach", "logs", "mustRun", "removeVolumes",
                            "destroyGraceSeconds"}


@dataclass(frozen=True)
class Change:
    """One step of an update: `create`, `update` (in place), `replace` (delete first) or `delete`; `fields`
    are the inputs that differ."""

    action: str
    urn: str
    label: str
    fields: tuple[str, ...]


class StackDriver:
    """The Docker resources of one rendering, on one engine.

    `images` maps each image reference in the record to a local tag. `select` keeps only the containers
    it accepts (and the networks, volumes and images they need); dependencies on containers left out are
    dropped and listed in `dropped`. `max_restarts`: stop waiting for a container's health once Docker
    has restarted it this often (the provider would wait out `waitTimeout`; a crash loop will not heal).
    """

    def __init__(self, rendering: Rendering, images: Mapping[str, str], *, engine: Engine | None = None,
                 select: Callable[[RecordedResource], bool] | None = None, parallel: int = UP_PARALLEL,
                 max_restarts: int = 2, remove_volumes_on_exit: bool = True,
                 log: Callable[[str], None] | None = None) -> None:
        self.rendering = rendering
        self.images = dict(images)
        self.engine = engine or Engine()
        self.parallel = parallel
        self.max_restarts = max_restarts
        self.remove_volumes_on_exit = remove_volumes_on_exit
        self._log = log or (lambda line: print(f"[docker] {line}", flush=True))
        self._select = select
        self.steps, self.dropped = self._plan(rendering, select)
        self.created: list[Created] = []
        self.timings: dict[str, float] = {}
        self.up_seconds: float | None = None
        self.exit_codes: dict[str, int] = {}
        self.container_logs: dict[str, str] = {}
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- planning

    def _plan(self, rendering: Rendering,
              select: Callable[[RecordedResource], bool] | None) -> tuple[dict[str, Step], list[str]]:
        by_urn = {r.urn: r for r in rendering.resources}
        docker = {r.urn: r for r in rendering.resources if r.type.startswith("docker:")}
        for r in docker.values():
            if r.type not in TYPES:
                raise UnsupportedInputError(f"{r.type} {r.name}: resource type not implemented by this driver")
            _check_keys(f"{r.type} {r.name}", r.inputs, _INPUTS[r.type])

        def docker_deps(r: RecordedResource) -> set[str]:
            return resource_deps(r, by_urn, docker)

        chosen = {urn for urn, r in docker.items() if r.type == CONTAINER and (select is None or select(r))}
        if select is None:
            chosen = set(docker)
        # Everything the chosen containers need that is not itself a container left out.
        frontier = list(chosen)
        while frontier:
            for dep in docker_deps(docker[frontier.pop()]):
                if dep not in chosen and (select is None or docker[dep].type != CONTAINER):
                    chosen.add(dep)
                    frontier.append(dep)
        steps: dict[str, Step] = {}
        dropped: list[str] = []
        for urn in [r.urn for r in rendering.resources if r.urn in chosen]:
            r = docker[urn]
            deps = docker_deps(r)
            dropped += [f"{r.name} -> {by_urn[d].name}" for d in sorted(deps - chosen)]
            inputs: dict[str, Any] = unwrap(r.inputs)
            unknown = _unknown_paths(inputs)
            if unknown:
                raise ValueError(f"{r.type} {r.name}: {unknown} are unknown (a preview rendering?); render with "
                                 "preview=False")
            steps[urn] = Step(r, inputs, tuple(sorted(deps & chosen)))
            if r.type == CONTAINER:
                self._check_container(r.name, inputs)
        return steps, dropped

    def _check_container(self, name: str, inputs: Mapping[str, Any]) -> None:
        if inputs["image"] not in self.images:
            raise KeyError(f"container {name}: image {inputs['image']!r} is not mapped to a local tag")
        if inputs.get("healthcheck"):
            _check_keys(f"{name}.healthcheck", inputs["healthcheck"], _HEALTH_INPUTS)
        for upload in inputs.get("uploads") or []:
            _check_keys(f"{name}.uploads", upload, _UPLOAD_INPUTS)
        for volume in inputs.get("volumes") or []:
            _check_keys(f"{name}.volumes", volume, _VOLUME_INPUTS)
        for port in inputs.get("ports") or []:
            _check_keys(f"{name}.ports", port, _PORT_INPUTS)
        for net in inputs.get("networksAdvanced") or []:
            _check_keys(f"{name}.networksAdvanced", net, _NETWORK_INPUTS)

    # -- up

    def __enter__(self) -> StackDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down(volumes=self.remove_volumes_on_exit)

    def up(self) -> None:
        """Create every planned resource, dependencies first and independent ones in parallel. On the first
        failure nothing new is started, what is in flight finishes, and the failure is raised."""
        self.up_seconds = self._schedule({urn: (step, self._create) for urn, step in self.steps.items()})
        self._log(f"up: {len(self.steps)} resources in {self.up_seconds:.1f}s")

    def critical_path(self) -> tuple[float, list[str]]:
        """The longest chain of the last `up`'s dependency graph, each step weighted by its measured time (the
        least any schedule of these steps could take): its seconds and its steps' labels, first to last. Set
        against `up_seconds`: near 1, the wall time is the graph's own waits; well above, the schedule added
        some (too few workers, steps that waited for no dependency)."""
        labels = {urn: step.label for urn, step in self.steps.items()}
        seconds, chain = longest_chain({labels[u]: [labels[d] for d in s.deps if d in labels]
                                        for u, s in self.steps.items()}, self.timings)
        return seconds, chain

    def _schedule(self, work: Mapping[str, tuple[Step, Callable[[Step], None]]]) -> float:
        """Run each step's action once the steps it depends on that are also in `work` are done (the others
        exist already), independent ones in parallel, as the engine schedules them. Returns the wall time."""
        started = time.monotonic()
        pending = dict(work)
        done: set[str] = set()
        failures: list[BaseException] = []
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            running: dict[Future[None], str] = {}
            while pending or running:
                if not failures:
                    for urn, (step, action) in list(pending.items()):
                        if all(d in done or d not in work for d in step.deps):
                            running[pool.submit(action, step)] = urn
                            del pending[urn]
                if not running:
                    if pending and not failures:
                        raise StackError(f"dependency cycle among {sorted(s.label for s, _ in pending.values())}")
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    urn = running.pop(future)
                    error = future.exception()
                    if error is None:
                        done.add(urn)
                    else:
                        failures.append(error)
        if failures:
            first = failures[0]
            for other in failures[1:]:
                first.add_note(f"also: {other}")
            if pending:
                first.add_note(f"not done: {', '.join(sorted(s.label for s, _ in pending.values()))}")
            raise first
        return time.monotonic() - started

    # -- update

    def changes(self, rendering: Rendering) -> list[Change]:
        """What `pulumi up` of `rendering` would do to what this driver holds, as the provider decides it: a
        container whose changed inputs are all in IN_PLACE is updated, any other changed input replaces it
        (delete first, as the stack asks); anything else that changed is replaced. Unchanged resources are
        not listed. In the new rendering's order, deletions last."""
        new_steps, _ = self._plan(rendering, self._select)
        out: list[Change] = []
        for urn, step in new_steps.items():
            old = self.steps.get(urn)
            if old is None:
                out.append(Change("create", urn, step.label, ()))
                continue
            fields = tuple(sorted(k for k in set(old.inputs) | set(step.inputs)
                                  if old.inputs.get(k) != step.inputs.get(k)))
            if not fields:
                continue
            in_place = step.resource.type == CONTAINER and set(fields) <= IN_PLACE
            out.append(Change("update" if in_place else "replace", urn, step.label, fields))
        out += [Change("delete", urn, step.label, ()) for urn, step in self.steps.items() if urn not in new_steps]
        return out

    def update(self, rendering: Rendering, *, only: Callable[[Step], bool] | None = None) -> list[Change]:
        """Bring the engine to `rendering` the way `pulumi up` would (`only`: as `pulumi up --target`, just
        the steps it accepts; the others keep what they have). Creates, in-place updates and replacements
        in dependency order, independent ones in parallel; deletions after them, newest first. Returns
        what was done."""
        new_steps, _ = self._plan(rendering, self._select)
        wanted = [c for c in self.changes(rendering)
                  if only is None or only(new_steps[c.urn] if c.urn in new_steps else self.steps[c.urn])]
        work: dict[str, tuple[Step, Callable[[Step], None]]] = {}
        for change in wanted:
            if change.action == "create":
                work[change.urn] = (new_steps[change.urn], self._create)
            elif change.action == "update":
                work[change.urn] = (new_steps[change.urn], self._update_in_place)
            elif change.action == "replace":
                work[change.urn] = (new_steps[change.urn], self._replace)
        took = self._schedule(work)
        for change in reversed([c for c in wanted if c.action == "delete"]):
            self._delete(self.steps[change.urn])
        for change in wanted:
            if change.action == "delete":
                del self.steps[change.urn]
            else:
                self.steps[change.urn] = new_steps[change.urn]
        self.rendering = rendering
        counts = {a: sum(c.action == a for c in wanted) for a in ("create", "update", "replace", "delete")}
        self._log(f"update: {', '.join(f'{n} {a}' for a, n in counts.items())} in {took:.1f}s")
        return wanted

    def replace(self, instance: str) -> None:
        """Replace one container as it is (what the engine does to a resource whose inputs follow another's
        new id, such as the Redis creation step's label of its nodes' ids)."""
        step = self.step(instance)
        self._schedule({step.resource.urn: (step, self._replace)})

    def step_of(self, urn: str) -> Step:
        return self.steps[urn]

    def _update_in_place(self, step: Step) -> None:
        """The provider's in-place container update: one ContainerUpdate with the restart policy and the
        resources (memory values in MiB as the inputs carry them), when any of them changed."""
        i = step.inputs
        old = self.steps[step.resource.urn].inputs
        if all(old.get(k) == i.get(k) for k in IN_PLACE_SENT):
            self._log(f"{step.label}: provider state only")
            return
        body: dict[str, Any] = {
            "RestartPolicy": {"Name": i.get("restart", "no"), "MaximumRetryCount": i.get("maxRetryCount", 0)},
            "CpuShares": i.get("cpuShares", 0), "Memory": _mib(i.get("memory", 0)),
            "MemoryReservation": _mib(i.get("memoryReservation", 0)),
        }
        if i.get("memorySwap"):
            body["MemorySwap"] = _mib(i["memorySwap"]) if i["memorySwap"] > 0 else i["memorySwap"]
        self.engine.call("POST", f"/containers/{self.container_id(step.instance)}/update", json_body=body)
        self._log(f"{step.label}: updated in place")

    def _replace(self, step: Step) -> None:
        self._delete(self.steps[step.resource.urn])
        self._create(step)

    def _delete(self, step: Step) -> None:
        """The provider's delete: a container is stopped with its destroyGraceSeconds (0 when unset: SIGKILL
        after SIGTERM at once), unless it is attached, then removed; a network is removed; a volume is kept
        (the stack retains volumes on delete)."""
        kind = step.resource.type
        name = step.inputs.get("name", step.resource.name)
        if kind == CONTAINER:
            ident = self.container_id(step.instance)
            grace = int(step.inputs.get("destroyGraceSeconds", 0))
            if not step.inputs.get("attach"):
                self.engine.call("POST", f"/containers/{ident}/stop", query={"t": grace},
                                 timeout_s=self.engine.timeout_s + grace, missing_ok=True)
            self.engine.call("DELETE", f"/containers/{ident}",
                             query={"force": True, "v": bool(step.inputs.get("removeVolumes", True))}, missing_ok=True)
            with self._lock:
                self._ids.pop(step.instance, None)
                self.created = [m for m in self.created if m.id != ident]
        elif kind == NETWORK:
            made = [m for m in self.created if m.type == NETWORK and m.name == name]
            for m in made:
                self.engine.call("DELETE", f"/networks/{m.id}", missing_ok=True)
            with self._lock:
                self.created = [m for m in self.created if m not in made]
        elif kind == VOLUME:
            raise StackError(f"{step.label}: this update would replace or delete a volume; the stack retains "
                             "volumes, so the data would be left behind under the old name")
        self._log(f"{step.label}: deleted")

    def _create(self, step: Step) -> None:
        started = time.monotonic()
        kind = step.resource.type
        if kind == NETWORK:
            self._create_network(step)
        elif kind == VOLUME:
            self._create_volume(step)
        elif kind == IMAGE:
            self._resolve_image(step)
        else:
            self._create_container(step)
        elapsed = time.monotonic() - started
        self.timings[step.label] = elapsed
        self._log(f"{step.label}: {elapsed:.1f}s")

    def _track(self, step: Step, ident: str) -> None:
        with self._lock:
            self.created.append(Created(step.resource.type, step.inputs.get("name", step.resource.name), ident,
                                        step.inputs))

    def _create_network(self, step: Step) -> None:
        i = step.inputs
        body: dict[str, Any] = {"Name": i["name"], "CheckDuplicate": True, "Driver": i.get("driver", "bridge"),
                                "Labels": _labels(i.get("labels"))}
        if "internal" in i:
            body["Internal"] = i["internal"]
        if "attachable" in i:
            body["Attachable"] = i["attachable"]
        if "options" in i:
            body["Options"] = i["options"]
        made = self.engine.call("POST", "/networks/create", json_body=body)
        self._track(step, made["Id"])

    def _create_volume(self, step: Step) -> None:
        i = step.inputs
        body = {"Name": i["name"], "Driver": i.get("driver", "local"), "DriverOpts": i.get("driverOpts") or {},
                "Labels": _labels(i.get("labels"))}
        # As `docker volume create`: an existing volume of that name is returned as it is.
        made = self.engine.call("POST", "/volumes/create", json_body=body)
        self._track(step, made["Name"])

    def _resolve_image(self, step: Step) -> None:
        ref = step.inputs["name"]
        if ref not in self.images:
            raise KeyError(f"image {ref!r} is not mapped to a local tag (no registry is used)")
        local = self.images[ref]
        found = self.engine.call("GET", f"/images/{urllib.parse.quote(local, safe='')}/json", missing_ok=True)
        if found is None:
            raise StackError(f"image {ref!r} -> {local!r}: not on this engine (run ./scripts/build-images)")
        # keepLocally (and a local tag) means nothing to remove at teardown: not tracked.

    def container_body(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The create request the provider sends for these inputs (image mapped to its local tag)."""
        i = inputs
        host: dict[str, Any] = {
            "RestartPolicy": {"Name": i.get("restart", "no"), "MaximumRetryCount": i.get("maxRetryCount", 0)},
            "LogConfig": {"Type": i.get("logDriver", "json-file"), "Config": dict(i.get("logOpts") or {})},
            "Init": False,
        }
        if "memory" in i:
            host["Memory"] = _mib(i["memory"])
        if "memoryReservation" in i:
            host["MemoryReservation"] = _mib(i["memoryReservation"])
        if "memorySwap" in i:
            host["MemorySwap"] = _mib(i["memorySwap"]) if i["memorySwap"] > 0 else i["memorySwap"]
        if "cpus" in i:
            host["NanoCpus"] = nano_cpus(i["cpus"])
        if "cpuShares" in i:
            host["CpuShares"] = i["cpuShares"]
        if "shmSize" in i:
            host["ShmSize"] = _mib(i["shmSize"])
        binds = []
        for v in i.get("volumes") or []:
            source = v.get("volumeName") or v.get("hostPath")
            if not source:
                raise UnsupportedInputError(f"{i['name']}: a volume without volumeName or hostPath")
            binds.append(f"{source}:{v['containerPath']}" + (":ro" if v.get("readOnly") else ""))
        if binds:
            host["Binds"] = binds
        exposed: dict[str, dict[str, str]] = {}
        bindings: dict[str, list[dict[str, str]]] = {}
        for p in i.get("ports") or []:
            key = f"{p['internal']}/{p.get('protocol', 'tcp')}"
            exposed[key] = {}
            bindings.setdefault(key, []).append({"HostIp": p.get("ip", "0.0.0.0"),
                                                 "HostPort": str(p.get("external", ""))})
        if bindings:
            host["PortBindings"] = bindings
        networks = i.get("networksAdvanced") or []
        config: dict[str, Any] = {
            "Image": self.images[i["image"]],
            "Hostname": i.get("hostname", ""),
            "Labels": _labels(i.get("labels")),
            "HostConfig": host,
        }
        if networks:
            first = networks[0]
            host["NetworkMode"] = first["name"]
            config["NetworkingConfig"] = {"EndpointsConfig": {first["name"]: {"Aliases": first.get("aliases") or []}}}
        if exposed:
            config["ExposedPorts"] = exposed
        for key, api in (("command", "Cmd"), ("entrypoints", "Entrypoint"), ("envs", "Env"), ("user", "User"),
                         ("workingDir", "WorkingDir"), ("stopSignal", "StopSignal"), ("stopTimeout", "StopTimeout")):
            if key in i:
                config[api] = i[key]
        if i.get("healthcheck"):
            h = i["healthcheck"]
            config["Healthcheck"] = {
                "Test": h["tests"],
                "Interval": duration_ns(h.get("interval", "0s")),
                "Timeout": duration_ns(h.get("timeout", "0s")),
                "StartPeriod": duration_ns(h.get("startPeriod", "0s")),
                "Retries": h.get("retries", 0),
            }
        return config

    def _create_container(self, step: Step) -> None:
        i = step.inputs
        made = self.engine.call("POST", "/containers/create", query={"name": i["name"]},
                                json_body=self.container_body(i))
        ident = made["Id"]
        with self._lock:
            self._ids[step.instance] = ident
        self._track(step, ident)
        for extra in (i.get("networksAdvanced") or [])[1:]:
            self.engine.call("POST", f"/networks/{extra['name']}/connect",
                             json_body={"Container": ident, "EndpointConfig": {"Aliases": extra.get("aliases") or []}})
        # Uploads land after create and before start, so the process finds its files at its first start.
        for upload in i.get("uploads") or []:
            self.engine.call("PUT", f"/containers/{ident}/archive", query={"path": "/"}, data=upload_tar(upload),
                             content_type="application/x-tar")
        if not i.get("start", True):
            return
        self.engine.call("POST", f"/containers/{ident}/start")
        if i.get("attach"):
            self._attach(step, ident)
        elif i.get("wait"):
            self._wait_healthy(step, ident)
        self._check_running(step, ident)

    def _attach(self, step: Step, ident: str) -> None:
        name = step.instance
        result = self.engine.call("POST", f"/containers/{ident}/wait", query={"condition": "not-running"},
                                  timeout_s=DEFAULT_ATTACH_TIMEOUT_S)
        self.exit_codes[name] = int(result["StatusCode"])
        if step.inputs.get("logs"):
            self.container_logs[name] = self.logs(name, tail=None)

    def _wait_healthy(self, step: Step, ident: str) -> None:
        timeout = step.inputs.get("waitTimeout", DEFAULT_WAIT_TIMEOUT_S)
        deadline = time.monotonic() + timeout
        if not step.inputs.get("healthcheck"):
            raise StackError(f"{step.label}: wait is true but the container has no health check")
        while True:
            state = self.engine.call("GET", f"/containers/{ident}/json")
            if (state["State"].get("Health") or {}).get("Status") == "healthy":
                return
            if state.get("RestartCount", 0) > self.max_restarts:
                raise StackError(self._failure(step, ident, f"restarted {state['RestartCount']} times before "
                                                            "becoming healthy"))
            if state["State"]["Status"] in ("exited", "dead") and step.inputs.get("restart", "no") == "no":
                raise StackError(self._failure(step, ident, "exited before becoming healthy"))
            if time.monotonic() > deadline:
                raise StackError(self._failure(step, ident, f"not healthy within waitTimeout {timeout}s"))
            time.sleep(POLL_S)

    def _check_running(self, step: Step, ident: str) -> None:
        """The provider's read after create: a container that must run but does not is an error."""
        if not step.inputs.get("mustRun", True):
            return
        state = self.engine.call("GET", f"/containers/{ident}/json")
        if not state["State"]["Running"]:
            raise StackError(self._failure(step, ident, "is not running (must_run)"))

    def _failure(self, step: Step, ident: str, what: str) -> str:
        state = self.engine.call("GET", f"/containers/{ident}/json") or {}
        s = state.get("State") or {}
        lines = [f"{step.label} {what}: status {s.get('Status')}, exit code {s.get('ExitCode')}, "
                 f"restarts {state.get('RestartCount')}" + (f", error {s['Error']!r}" if s.get("Error") else "")]
        health = (s.get("Health") or {}).get("Log") or []
        for probe in health[-3:]:
            lines.append(f"  health check exit {probe.get('ExitCode')}: {str(probe.get('Output', '')).strip()[:300]}")
        tail = self.logs(step.instance, tail=30).strip()
        if tail:
            lines.append("  last log lines:")
            lines += [f"    {line}" for line in tail.splitlines()]
        return "\n".join(lines)

    # -- teardown

    def down(self, *, volumes: bool = False, graceful: bool = False) -> None:
        """Remove what up() created, containers first (newest first), then networks; volumes only when
        asked (the stack keeps them on delete). graceful: stop with destroyGraceSeconds first, as the
        provider does; otherwise containers are killed, which is all a test's teardown needs."""
        errors: list[str] = []
        for made in reversed(self.created):
            try:
                if made.type == CONTAINER:
                    if graceful and not made.inputs.get("attach"):
                        self.engine.call("POST", f"/containers/{made.id}/stop",
                                         query={"t": made.inputs.get("destroyGraceSeconds", 0)},
                                         timeout_s=self.engine.timeout_s + made.inputs.get("destroyGraceSeconds", 0),
                                         missing_ok=True)
                    self.engine.call("DELETE", f"/containers/{made.id}",
                                     query={"force": True, "v": bool(made.inputs.get("removeVolumes", True))},
                                     missing_ok=True)
                elif made.type == NETWORK:
                    self.engine.call("DELETE", f"/networks/{made.id}", missing_ok=True)
                elif made.type == VOLUME and volumes:
                    self.engine.call("DELETE", f"/volumes/{made.id}", missing_ok=True)
            except EngineError as exc:
                errors.append(str(exc))
        if errors:
            raise EngineError("teardown", None, "; ".join(errors))
        # Kept volumes stay listed: a later down(volumes=True) removes them.
        self.created = [m for m in self.created if m.type == VOLUME and not volumes]
        self._ids.clear()

    def purge(self, *, volumes: bool = True) -> list[str]:
        """Remove what an earlier, interrupted run of this stack left behind under the recorded names, so
        that up() starts from nothing. Only objects labelled with this stack's project and stack are
        touched; a same-named object of anyone else is an error. Returns what was removed."""
        ours = {"banyan.project": self.rendering.project, "banyan.stack": self.rendering.stack}
        removed: list[str] = []

        def owned(labels: Mapping[str, str] | None, what: str) -> bool:
            if all((labels or {}).get(k) == v for k, v in ours.items()):
                return True
            raise StackError(f"{what} exists and is not labelled as {ours}: refusing to remove it")

        for step in self.steps.values():
            if step.resource.type != CONTAINER:
                continue
            name = step.inputs["name"]
            found = self.engine.call("GET", f"/containers/{name}/json", missing_ok=True)
            if found and owned(found["Config"].get("Labels"), f"container {name}"):
                self.engine.call("DELETE", f"/containers/{found['Id']}", query={"force": True}, missing_ok=True)
                removed.append(f"container {name}")
        for step in self.steps.values():
            name = step.inputs.get("name")
            if step.resource.type == NETWORK:
                found = self.engine.call("GET", f"/networks/{name}", missing_ok=True)
                if found and owned(found.get("Labels"), f"network {name}"):
                    users = sorted(c.get("Name", "?") for c in (found.get("Containers") or {}).values())
                    if users:
                        raise StackError(f"network {name} is in use by {users}, which this rendering does not "
                                         "name: another run of this stack on the same engine?")
                    self.engine.call("DELETE", f"/networks/{found['Id']}", missing_ok=True)
                    removed.append(f"network {name}")
            elif step.resource.type == VOLUME and volumes:
                found = self.engine.call("GET", f"/volumes/{name}", missing_ok=True)
                if found and owned(found.get("Labels"), f"volume {name}"):
                    self.engine.call("DELETE", f"/volumes/{name}", missing_ok=True)
                    removed.append(f"volume {name}")
        if removed:
            self._log(f"purged from an earlier run: {', '.join(removed)}")
        return removed

    # -- queries

    # Containers are named by instance here (api-gateway-1, redis-cluster-create, ...).

    def container_id(self, instance: str) -> str:
        if instance in self._ids:
            return self._ids[instance]
        raise KeyError(f"no container of instance {instance!r} was created by this driver")

    def instances(self) -> list[str]:
        """The planned containers' instances, in the rendering's order."""
        return [s.instance for s in self.steps.values() if s.resource.type == CONTAINER]

    def step(self, instance: str) -> Step:
        for s in self.steps.values():
            if s.resource.type == CONTAINER and s.instance == instance:
                return s
        raise KeyError(instance)

    def inspect(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.engine.call("GET", f"/containers/{self.container_id(name)}/json")
        return found

    def address(self, name: str) -> str:
        """The container's IPv4 address on its first network: reachable from the Docker host."""
        networks = self.inspect(name)["NetworkSettings"]["Networks"]
        first = self.step(name).inputs["networksAdvanced"][0]["name"]
        return str(networks[first]["IPAddress"])

    def logs(self, name: str, *, tail: int | None = 50) -> str:
        """The container's output (stdout and stderr in the order written); `tail=None` for all of it."""
        ident = self._ids.get(name) or self.step(name).inputs["name"]
        status, raw = self.engine.request("GET", f"/containers/{ident}/logs",
                                          query={"stdout": True, "stderr": True, "tail": tail or "all"})
        if status >= 400:
            return f"(logs unavailable: {_message(raw)})"
        return _stream_text(raw)

    def exec(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
             user: str | None = None, timeout_s: float = 60) -> ExecResult:
        """Run a command in the running container (as `docker exec`), wait for it, return its output."""
        body: dict[str, Any] = {"AttachStdout": True, "AttachStderr": True, "Cmd": list(argv)}
        if env:
            body["Env"] = [f"{k}={v}" for k, v in env.items()]
        if user:
            body["User"] = user
        made = self.engine.call("POST", f"/containers/{self.container_id(name)}/exec", json_body=body)
        status, raw = self.engine.request("POST", f"/exec/{made['Id']}/start",
                                          body=json.dumps({"Detach": False, "Tty": False}).encode(),
                                          timeout_s=timeout_s)
        if status >= 400:
            raise EngineError(f"exec in {name}", status, _message(raw))
        result = self.engine.call("GET", f"/exec/{made['Id']}/json")
        out, err = demux(raw)
        return ExecResult(int(result["ExitCode"]), out.decode(errors="replace"), err.decode(errors="replace"))

    def env(self, name: str) -> dict[str, str]:
        """A container's rendered environment with secrets unwrapped: for checks that log in with them."""
        return dict(e.split("=", 1) for e in self.step(name).inputs.get("envs") or [])

    def uploads(self, name: str) -> dict[str, tuple[bytes, int]]:
        """A container's rendered uploads: path -> (content, the mode the provider gives the file)."""
        out: dict[str, tuple[bytes, int]] = {}
        for u in self.step(name).inputs.get("uploads") or []:
            out[str(u["file"])] = (upload_content(u), 0o744 if u.get("executable") else 0o644)
        return out

    def health(self, name: str) -> str:
        return str((self.inspect(name)["State"].get("Health") or {}).get("Status", "none"))

    def mismatches(self, name: str) -> list[str]:
        """Where the engine's view of a created container differs from what was rendered for it."""
        step = self.step(name)
        want = self.container_body(step.inputs)
        got = self.inspect(name)
        config, host = got["Config"], got["HostConfig"]
        problems: list[str] = []

        def check(path: str, engine_value: object, rendered: object) -> None:
            if engine_value != rendered:
                problems.append(f"{path}: engine has {engine_value!r}, rendered {rendered!r}")

        for key in ("Hostname", "Cmd", "Entrypoint", "StopTimeout", "StopSignal", "User", "WorkingDir"):
            if key in want:
                check(f"Config.{key}", config.get(key), want[key])
        check("Config.Image", config.get("Image"), want["Image"])
        if "Env" in want:
            missing = [e.split("=", 1)[0] for e in want["Env"] if e not in (config.get("Env") or [])]
            if missing:
                problems.append(f"Config.Env lacks the rendered values of {missing}")
        for key, value in want["Labels"].items():
            check(f"Config.Labels[{key}]", (config.get("Labels") or {}).get(key), value)
        if "Healthcheck" in want:
            check("Config.Healthcheck", config.get("Healthcheck"), want["Healthcheck"])
        for key in ("Memory", "MemoryReservation", "MemorySwap", "NanoCpus", "CpuShares", "ShmSize", "NetworkMode"):
            if key in want["HostConfig"]:
                check(f"HostConfig.{key}", host.get(key), want["HostConfig"][key])
        check("HostConfig.RestartPolicy.Name", host["RestartPolicy"]["Name"],
              want["HostConfig"]["RestartPolicy"]["Name"])
        check("HostConfig.LogConfig", host["LogConfig"], want["HostConfig"]["LogConfig"])
        check("HostConfig.Binds", sorted(host.get("Binds") or []), sorted(want["HostConfig"].get("Binds") or []))
        check("HostConfig.PortBindings", host.get("PortBindings") or {}, want["HostConfig"].get("PortBindings") or {})
        networks = got["NetworkSettings"]["Networks"]
        for net in step.inputs.get("networksAdvanced") or []:
            if net["name"] not in networks:
                problems.append(f"not attached to network {net['name']}")
                continue
            aliases = networks[net["name"]].get("Aliases") or []
            absent = [a for a in net.get("aliases") or [] if a not in aliases]
            if absent:
                problems.append(f"network {net['name']}: aliases {absent} missing (engine: {aliases})")
        extra = sorted(set(networks) - {n["name"] for n in step.inputs.get("networksAdvanced") or []})
        if extra:
            problems.append(f"also attached to {extra}")
        return problems


def _frames(raw: bytes) -> list[tuple[int, bytes]] | None:
    """The frames of a non-TTY stream (8-byte headers: stream, 0, 0, 0, big-endian size); None if it is not one."""
    frames: list[tuple[int, bytes]] = []
    i = 0
    while i < len(raw):
        if i + 8 > len(raw):
            return None
        kind, size = raw[i], int.from_bytes(raw[i + 4:i + 8], "big")
        if kind not in (0, 1, 2) or raw[i + 1:i + 4] != b"\0\0\0" or i + 8 + size > len(raw):
            return None
        frames.append((kind, raw[i + 8:i + 8 + size]))
        i += 8 + size
    return frames


def _stream_text(raw: bytes) -> str:
    """Both streams of a log in the order they were written (a TTY stream as it is)."""
    frames = _frames(raw)
    data = raw if frames is None else b"".join(chunk for _, chunk in frames)
    return data.decode(errors="replace")


def _unknown_paths(value: Any, path: str = "") -> list[str]:
    if isinstance(value, Unknown):
        return [path or "."]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _unknown_paths(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _unknown_paths(v, f"{path}[{i}]")]
    return []


def resource_deps(r: RecordedResource, by_urn: Mapping[str, RecordedResource],
                  among: Mapping[str, RecordedResource]) -> set[str]:
    """The resources of `among` (by URN) that `r` waits for: its dependencies, where a dependency on a component
    stands for the custom resources under it (what the Pulumi engine waits for). `by_urn`: every resource of the
    rendering."""
    out: set[str] = set()
    for urn in r.depends_on:
        dep = by_urn.get(urn)
        if dep is None:
            continue
        if dep.custom:
            if urn in among:
                out.add(urn)
        else:
            out |= {u for u, d in by_urn.items() if u in among and _under(d, dep, by_urn)}
    return out


def _under(r: RecordedResource, ancestor: RecordedResource, by_urn: Mapping[str, RecordedResource]) -> bool:
    parent = r.parent
    while parent is not None:
        if parent == ancestor.urn:
            return True
        found = by_urn.get(parent)
        parent = found.parent if found else None
    return False


# ---- local images --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LocalImage:
    """An image built by scripts/build-images: banyan-local/<part>:<release>-<version>."""

    tag: str
    part: str
    version: str
    release: str


def host_release(os_release: Path = Path("/etc/os-release")) -> str:
    """This host's Debian codename (the images are built for it)."""
    for line in os_release.read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


def local_images(engine: Engine, release: str | None = None) -> dict[str, LocalImage]:
    """The newest local image of each part for `release` (default: this host's), by the builder's labels."""
    release = release or host_release()
    listed = engine.call("GET", "/images/json", query={"filters": {"label": ["banyan.local.part"]}}) or []
    found: dict[str, tuple[int, LocalImage]] = {}
    for image in listed:
        labels = image.get("Labels") or {}
        if labels.get("banyan.local.release") != release:
            continue
        part, version = labels["banyan.local.part"], labels.get("banyan.local.version", "")
        tags = [t for t in image.get("RepoTags") or [] if t.endswith(f":{release}-{version}")]
        if not tags:
            continue
        created = int(image.get("Created", 0))
        if part not in found or created > found[part][0]:
            found[part] = (created, LocalImage(tags[0], part, version, release))
    return {part: image for part, (_, image) in found.items()}


def local_stack_sets(images: Mapping[str, LocalImage]) -> dict[str, object]:
    """Stack overrides that render the config files for the local servers' versions (as tests/servers does),
    with image references that name those versions; `image_mapping` then maps them to the local tags."""
    version = {part: images[part].version for part in ("postgres", "rabbitmq", "redis", "nginx") if part in images}
    return version_sets(**version)


def image_refs(rendering: Rendering) -> list[str]:
    refs = {str(unwrap(r.inputs)["name"]) for r in rendering.of_type(IMAGE)}
    refs |= {str(unwrap(r.inputs)["image"]) for r in rendering.of_type(CONTAINER)}
    return sorted(refs)


def image_mapping(rendering: Rendering, images: Mapping[str, LocalImage]) -> dict[str, str]:
    """Each image reference of the rendering -> the local tag of the same repository (postgres, redis,
    ..., python for the placeholder gateway and services)."""
    mapping: dict[str, str] = {}
    missing: list[str] = []
    for ref in image_refs(rendering):
        repository = ref.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
        part = OFFICIAL_TO_PART.get(repository)
        if part is None or part not in images:
            missing.append(ref)
        else:
            mapping[ref] = images[part].tag
    if missing:
        raise KeyError(f"no local image for {missing} (have {sorted(images)}); run ./scripts/build-images")
    return mapping


def longest_chain(deps: Mapping[str, Sequence[str]], cost: Mapping[str, float]) -> tuple[float, list[str]]:
    """The costliest path through a dependency graph (node -> the nodes it waits for; a node without a cost
    costs 0): its total and its nodes, first to last."""
    best: dict[str, tuple[float, list[str]]] = {}

    def through(node: str) -> tuple[float, list[str]]:
        if node not in best:
            before = max((through(d) for d in deps.get(node, ())), key=lambda c: c[0], default=(0.0, []))
            best[node] = (before[0] + cost.get(node, 0.0), [*before[1], node])
        return best[node]

    return max((through(n) for n in deps), key=lambda c: c[0], default=(0.0, []))


def wait_until(check: Callable[[], bool], *, timeout_s: float, what: str, poll_s: float = POLL_S) -> float:
    """Poll `check` until it is true; the seconds it took. Raises TimeoutError naming `what`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{what}: not within {timeout_s}s")
        time.sleep(poll_s)
    return time.monotonic() - started


