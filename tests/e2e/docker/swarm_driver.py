"""Create a rendered swarm stack on a real Docker engine in swarm mode the way pulumi-docker creates it.

    with SwarmDriver(rendering, swarm_image_mapping(rendering, images), engine=engine) as stack:
        stack.up()                    # network, configs, secrets, then services by dependency, each converged
        stack.exec("postgres-primary", ["psql", ...])

The record's `docker:index/...` resources (Network, ServiceConfig, Secret, Service) are created in the order of
their recorded dependencies, independent ones in parallel, through the Engine API (driver.Engine), with the
request bodies the bridged provider builds (terraform-provider-docker, internal/provider/
resource_docker_service_structures.go `createServiceSpec`, resource_docker_config.go, resource_docker_secret.go).
Mock ids in the record (`<name>-id`) are replaced by the ids the engine gave. Every service carries a
`convergeConfig`, and the driver waits as the provider does (resource_docker_service_funcs.go): after a create
until as many tasks run as there are replicas (a task with a health check runs only once healthy; on a timeout
the provider deletes the service and fails with the failed tasks' logs), after an update until the service's
UpdateStatus is `completed`, failing on `rollback_completed` (or a rollback that has converged) and on `paused`
with the status message, as the provider does. The failed tasks' own errors are added to the error here; the
provider's message is the first line. Any input this driver does not implement stops it before the first request.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from testkit import RecordedResource, Rendering, unwrap
from tests.e2e.docker.driver import (
    OFFICIAL_TO_PART,
    Engine,
    EngineError,
    ExecResult,
    LocalImage,
    StackDriver,
    StackError,
    Step,
    UnsupportedInputError,
    _check_keys,
    _stream_text,
    demux,
    duration_ns,
    resource_deps,
)

NETWORK = "docker:index/network:Network"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
SECRET = "docker:index/secret:Secret"
SERVICE = "docker:index/service:Service"
TYPES = (NETWORK, CONFIG, SECRET, SERVICE)
POLL_S = 1.0

_INPUTS = {
    NETWORK: {"name", "driver", "labels", "attachable", "internal"},
    CONFIG: {"name", "data", "labels"},
    SECRET: {"name", "data", "labels"},
    SERVICE: {"name", "labels", "mode", "taskSpec", "endpointSpec", "updateConfig", "rollbackConfig",
              "convergeConfig"},
}
_TASK = {"containerSpec", "resources", "restartPolicy", "placement", "networksAdvanceds", "logDriver"}
_CONTAINER = {"image", "hostname", "commands", "args", "env", "labels", "healthcheck", "configs", "secrets",
              "mounts", "stopGracePeriod"}
_ROLLOUT = {"parallelism", "delay", "order", "failureAction", "monitor", "maxFailureRatio"}


def _labels(items: Sequence[Mapping[str, str]] | None) -> dict[str, str]:
    return {item["label"]: item["value"] for item in items or []}


def swarm_image_refs(rendering: Rendering) -> list[str]:
    return sorted({str(unwrap(r.inputs)["taskSpec"]["containerSpec"]["image"]) for r in rendering.of_type(SERVICE)})


def swarm_image_mapping(rendering: Rendering, images: Mapping[str, LocalImage],
                        extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each service image of the rendering -> the local tag of the same repository; `extra` overrides."""
    mapping: dict[str, str] = {}
    for ref in swarm_image_refs(rendering):
        if extra and ref in extra:
            mapping[ref] = extra[ref]
            continue
        repository = ref.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
        part = OFFICIAL_TO_PART.get(repository)
        if part is None or part not in images:
            raise KeyError(f"no local image for {ref} (have {sorted(images)})")
        mapping[ref] = images[part].tag
    return mapping


@dataclass
class SwarmStep:
    resource: RecordedResource
    inputs: dict[str, Any] = field(repr=False)
    deps: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.resource.type.rsplit(':', 1)[-1]} {self.inputs.get('name', self.resource.name)}"

    @property
    def instance(self) -> str:
        return _labels(self.inputs.get("labels")).get("banyan.instance", self.resource.name)


def swarm_state(engine: Engine) -> str:
    """The engine's swarm state: inactive, active, pending, error, locked."""
    return str(engine.call("GET", "/info")["Swarm"]["LocalNodeState"])


class SwarmDriver:
    """The Swarm resources of one rendering on one engine (a manager). `images` maps each image reference of the
    record to a local tag."""

    def __init__(self, rendering: Rendering, images: Mapping[str, str], *, engine: Engine | None = None,
                 parallel: int = 8, log: Callable[[str], None] | None = None) -> None:
        self.rendering = rendering
        self.images = dict(images)
        self.engine = engine or Engine()
        self.parallel = parallel
        self._log = log or (lambda line: print(f"[swarm] {line}", flush=True))
        self.steps = self._plan(rendering)
        self.ids: dict[str, str] = {}  # mock id -> engine id
        self.timings: dict[str, float] = {}
        self.up_seconds: float | None = None

    # -- planning

    def _plan(self, rendering: Rendering) -> dict[str, SwarmStep]:
        by_urn = {r.urn: r for r in rendering.resources}
        ours = {r.urn: r for r in rendering.resources if r.type.startswith("docker:")}
        for r in ours.values():
            if r.type not in TYPES:
                raise UnsupportedInputError(f"{r.type} {r.name}: resource type not implemented by this driver")
            _check_keys(f"{r.type} {r.name}", r.inputs, _INPUTS[r.type])
            if r.type == SERVICE:
                inputs = unwrap(r.inputs)
                _check_keys(f"{r.name}.taskSpec", inputs["taskSpec"], _TASK)
                _check_keys(f"{r.name}.containerSpec", inputs["taskSpec"]["containerSpec"], _CONTAINER)
                for key in ("updateConfig", "rollbackConfig"):
                    _check_keys(f"{r.name}.{key}", inputs[key], _ROLLOUT)
                image = inputs["taskSpec"]["containerSpec"]["image"]
                if image not in self.images:
                    raise KeyError(f"service {r.name}: image {image!r} is not mapped to a local tag")

        return {urn: SwarmStep(r, unwrap(r.inputs), tuple(sorted(resource_deps(r, by_urn, ours))))
                for urn, r in ours.items()}

    # -- request bodies, as the provider builds them

    def _id(self, mock: str) -> str:
        if mock not in self.ids:
            raise StackError(f"{mock}: referenced before it was created")
        return self.ids[mock]

    def service_spec(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        task, cs = inputs["taskSpec"], inputs["taskSpec"]["containerSpec"]
        container: dict[str, Any] = {"Image": self.images[cs["image"]], "Labels": _labels(cs.get("labels"))}
        if cs.get("commands"):
            container["Command"] = list(cs["commands"])
        if cs.get("args"):
            container["Args"] = list(cs["args"])
        if cs.get("hostname"):
            container["Hostname"] = cs["hostname"]
        if cs.get("env"):
            container["Env"] = [f"{k}={v}" for k, v in sorted(cs["env"].items())]
        if cs.get("healthcheck"):
            h = cs["healthcheck"]
            container["Healthcheck"] = {"Test": list(h["tests"]), "Interval": duration_ns(h["interval"]),
                                        "Timeout": duration_ns(h["timeout"]), "Retries": h["retries"],
                                        "StartPeriod": duration_ns(h["startPeriod"])}
        if cs.get("stopGracePeriod"):
            container["StopGracePeriod"] = duration_ns(cs["stopGracePeriod"])
        if cs.get("configs"):
            container["Configs"] = [
                {"ConfigID": self._id(c["configId"]), "ConfigName": c["configName"],
                 "File": {"Name": c["fileName"], "UID": c["fileUid"], "GID": c["fileGid"], "Mode": c["fileMode"]}}
                for c in cs["configs"]]
        if cs.get("secrets"):
            container["Secrets"] = [
                {"SecretID": self._id(s["secretId"]), "SecretName": s["secretName"],
                 "File": {"Name": s["fileName"], "UID": s["fileUid"], "GID": s["fileGid"], "Mode": s["fileMode"]}}
                for s in cs["secrets"]]
        mounts = []
        for m in cs.get("mounts") or []:
            mount: dict[str, Any] = {"Type": m["type"], "Target": m["target"]}
            if m["type"] == "volume":
                vo = m.get("volumeOptions") or {}
                mount["Source"] = m["source"]
                mount["VolumeOptions"] = {"Labels": _labels(vo.get("labels")),
                                          "DriverConfig": {"Name": vo.get("driverName", "local")}}
            elif m["type"] == "tmpfs":
                mount["TmpfsOptions"] = {"SizeBytes": m["tmpfsOptions"]["sizeBytes"]}
            else:
                raise UnsupportedInputError(f"mount type {m['type']} is not implemented by this driver")
            mounts.append(mount)
        if mounts:
            container["Mounts"] = mounts
        res = task["resources"]
        template: dict[str, Any] = {
            "ContainerSpec": container,
            "Resources": {
                "Limits": {"NanoCPUs": res["limits"]["nanoCpus"], "MemoryBytes": res["limits"]["memoryBytes"]},
                "Reservations": {"NanoCPUs": res["reservation"]["nanoCpus"],
                                 "MemoryBytes": res["reservation"]["memoryBytes"]},
            },
            "RestartPolicy": {"Condition": task["restartPolicy"]["condition"],
                              "Delay": duration_ns(task["restartPolicy"]["delay"])},
            "Networks": [{"Target": self._id(n["id"]), "Aliases": list(n.get("aliases") or [])}
                         for n in task["networksAdvanceds"]],
            "LogDriver": {"Name": task["logDriver"]["name"], "Options": dict(task["logDriver"].get("options") or {})},
        }
        placement = task.get("placement") or {}
        _check_keys("placement", placement, {"constraints", "maxReplicas"})
        if placement:
            template["Placement"] = {"Constraints": list(placement.get("constraints") or [])}
            if placement.get("maxReplicas"):
                template["Placement"]["MaxReplicas"] = placement["maxReplicas"]
        endpoint = inputs.get("endpointSpec") or {}

        def rollout(c: Mapping[str, Any]) -> dict[str, Any]:
            return {"Parallelism": c["parallelism"], "Delay": duration_ns(c["delay"]),
                    "FailureAction": c["failureAction"], "Monitor": duration_ns(c["monitor"]),
                    "MaxFailureRatio": float(c["maxFailureRatio"]), "Order": c["order"]}

        return {
            "Name": inputs["name"],
            "Labels": _labels(inputs.get("labels")),
            "TaskTemplate": template,
            "Mode": {"Replicated": {"Replicas": inputs["mode"]["replicated"]["replicas"]}},
            "UpdateConfig": rollout(inputs["updateConfig"]),
            "RollbackConfig": rollout(inputs["rollbackConfig"]),
            "EndpointSpec": {
                "Mode": endpoint.get("mode", "vip"),
                "Ports": [{"Protocol": p.get("protocol", "tcp"), "TargetPort": p["targetPort"],
                           "PublishedPort": p["publishedPort"], "PublishMode": p.get("publishMode", "ingress")}
                          for p in endpoint.get("ports") or []],
            },
        }

    # -- up

    def __enter__(self) -> SwarmDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down(volumes=True)

    def _schedule(self, work: Mapping[str, tuple[Any, Callable[[Any], None]]]) -> float:
        """The Docker driver's scheduler (dependencies first, independent steps in parallel): it uses only
        `parallel` and the steps' `deps`."""
        return StackDriver._schedule(cast(Any, self), work)

    def up(self) -> None:
        """Everything, dependencies first, independent resources in parallel; services converged."""
        work = {urn: (step, self._create) for urn, step in self.steps.items()}
        self.up_seconds = self._schedule(work)
        self._log(f"up: {len(self.steps)} resources in {self.up_seconds:.1f}s")

    def _create(self, step: SwarmStep | Step) -> None:
        assert isinstance(step, SwarmStep)
        started = time.monotonic()
        r, inputs = step.resource, step.inputs
        labels = _labels(inputs.get("labels"))
        if r.type == NETWORK:
            made = self.engine.call("POST", "/networks/create", json_body={
                "Name": inputs["name"], "Driver": inputs["driver"], "Labels": labels, "CheckDuplicate": True,
                "Attachable": bool(inputs.get("attachable")), "Internal": bool(inputs.get("internal"))})
        elif r.type == CONFIG:
            made = self.engine.call("POST", "/configs/create", json_body={
                "Name": inputs["name"], "Labels": labels, "Data": inputs["data"]})
        elif r.type == SECRET:
            made = self.engine.call("POST", "/secrets/create", json_body={
                "Name": inputs["name"], "Labels": labels, "Data": inputs["data"]})
        else:
            made = self.engine.call("POST", "/services/create", json_body=self.service_spec(inputs))
            self.ids[f"{r.name}-id"] = made["ID"]
            self.converge_create(made["ID"], inputs)
        self.ids[f"{r.name}-id"] = made.get("Id") or made.get("ID")
        self.timings[step.instance if r.type == SERVICE else step.label] = time.monotonic() - started

    # -- convergence, as the provider's convergeConfig waits

    def tasks(self, service_id: str, *, desired: str | None = "running") -> list[dict[str, Any]]:
        filters: dict[str, list[str]] = {"service": [service_id]}
        if desired:
            filters["desired-state"] = [desired]
        return list(self.engine.call("GET", "/tasks", query={"filters": filters}) or [])

    def running(self, service_id: str) -> int:
        return sum(1 for t in self.tasks(service_id) if t["Status"]["State"] == "running")

    def task_errors(self, service_id: str) -> list[str]:
        """The service's failed or rejected tasks, newest first: what `docker service ps --no-trunc` shows."""
        out = []
        for t in sorted(self.tasks(service_id, desired=None), key=lambda t: t["CreatedAt"], reverse=True):
            status = t["Status"]
            if status["State"] in ("failed", "rejected") or status.get("Err"):
                out.append(f"task {t['ID'][:12]} ({t['Spec']['ContainerSpec']['Image']}): {status['State']}: "
                           f"{status.get('Err') or status.get('Message')}")
        return out[:5]

    def converge_create(self, service_id: str, inputs: Mapping[str, Any]) -> None:
        replicas = inputs["mode"]["replicated"]["replicas"]
        timeout = duration_ns(inputs["convergeConfig"]["timeout"]) / 1e9
        deadline = time.monotonic() + timeout
        while self.running(service_id) != replicas:
            if time.monotonic() > deadline:
                errors = self.task_errors(service_id)
                # The provider deletes a service that did not converge.
                self.engine.call("DELETE", f"/services/{service_id}", missing_ok=True)
                raise StackError(f"Service with ID ({service_id}) did not converge after {timeout:g}s: "
                                 f"{inputs['name']}\n" + "\n".join(errors))
            time.sleep(POLL_S)

    def converge_update(self, service_id: str, inputs: Mapping[str, Any], *, rolling: bool,
                        before: Mapping[str, Any] | None) -> None:
        """`rolling`: the task template changed, so Swarm starts a rolling update, whose UpdateStatus replaces
        `before`. The provider waits 7 s before its first look (its StateChangeConf Delay), by which time Swarm's
        updater has set the new status; here the driver waits for the new status itself."""
        replicas = inputs["mode"]["replicated"]["replicas"]
        timeout = duration_ns(inputs["convergeConfig"]["timeout"]) / 1e9
        deadline = time.monotonic() + timeout
        while True:
            service = self.engine.call("GET", f"/services/{service_id}")
            status = service.get("UpdateStatus") or {}
            if rolling and (not status or status == before):
                if time.monotonic() > deadline:
                    raise StackError(f"{inputs['name']}: Swarm did not start the update within {timeout:g}s")
                time.sleep(POLL_S / 4)
                continue
            state, message = status.get("State"), status.get("Message", "")
            failed = None
            if state == "completed":
                return
            if state == "rollback_completed" or (state == "rollback_started" and self.running(service_id) == replicas):
                failed = f"service rollback completed: {message}"
            elif state == "paused":
                failed = f"service update paused: {message}"
            elif state == "rollback_paused":
                failed = f"service rollback paused: {message}"
            elif state is None and self.running(service_id) == replicas:
                return
            if failed:
                raise StackError("\n".join([f"{inputs['name']}: {failed}", *self.task_errors(service_id)]))
            if time.monotonic() > deadline:
                raise StackError(f"Service with ID ({service_id}) did not converge after {timeout:g}s")
            time.sleep(POLL_S)

    # -- update, as `pulumi up` of a new rendering

    def changes(self, rendering: Rendering) -> list[tuple[str, str]]:
        """(action, label): `create` for a new resource, `update` for a service whose inputs changed (in place:
        no input this stack changes forces a new service), `replace` for anything else that changed, and
        `delete` for what the new rendering lacks."""
        new = self._plan(rendering)
        out = []
        for urn, step in new.items():
            old = self.steps.get(urn)
            if old is None:
                out.append(("create", urn))
            elif old.inputs != step.inputs:
                if step.resource.type == SERVICE and old.inputs["name"] == step.inputs["name"]:
                    out.append(("update", urn))
                else:
                    out.append(("replace", urn))
        out += [("delete", urn) for urn in self.steps if urn not in new]
        return out

    def update(self, rendering: Rendering, images: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
        """Bring the engine to `rendering`: creates and replacements (create before delete) and in-place service
        updates in dependency order, each converged; then deletions. A failed update raises, leaving the
        deletions undone (the old configs stay for the rolled-back tasks), as the engine does."""
        if images:
            self.images.update(images)
        wanted = self.changes(rendering)
        new = self._plan(rendering)
        old_steps = self.steps
        work: dict[str, tuple[Any, Callable[[Any], None]]] = {}
        for action, urn in wanted:
            if action in ("create", "replace"):
                work[urn] = (new[urn], self._create)
            elif action == "update":
                work[urn] = (new[urn], self._update_service)
        self.steps = {**old_steps, **{u: new[u] for u in work}}
        self._schedule(work)
        for action, urn in wanted:
            if action in ("replace", "delete"):
                self._delete(old_steps[urn])
        self.steps = new
        return wanted

    def _update_service(self, step: SwarmStep | Step) -> None:
        assert isinstance(step, SwarmStep)
        service_id = self._id(f"{step.resource.name}-id")
        current = self.engine.call("GET", f"/services/{service_id}")
        spec = self.service_spec(step.inputs)
        self.engine.call("POST", f"/services/{service_id}/update",
                         query={"version": current["Version"]["Index"]}, json_body=spec)
        rolling = list(_differences(spec["TaskTemplate"], current["Spec"]["TaskTemplate"], "")) != []
        self.converge_update(service_id, step.inputs, rolling=rolling, before=current.get("UpdateStatus"))

    # -- down

    def _delete(self, step: SwarmStep) -> None:
        r = step.resource
        ident = self.ids.pop(f"{r.name}-id", None) or step.inputs["name"]
        path = {NETWORK: "/networks/", CONFIG: "/configs/", SECRET: "/secrets/", SERVICE: "/services/"}[r.type]
        self.engine.call("DELETE", f"{path}{ident}", missing_ok=True)

    def down(self, *, volumes: bool = True) -> None:
        """Services first (and their containers gone), then configs, secrets, the network; volumes on request."""
        services = [s for s in self.steps.values() if s.resource.type == SERVICE]
        for s in services:
            self._delete(s)
        names = {s.inputs["name"] for s in services}

        def gone() -> bool:
            listed = self.engine.call("GET", "/containers/json", query={
                "all": True, "filters": {"label": ["com.docker.swarm.service.name"]}}) or []
            return not any(c["Labels"].get("com.docker.swarm.service.name") in names for c in listed)

        deadline = time.monotonic() + 120
        while not gone() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        for kind in (CONFIG, SECRET, NETWORK):
            for s in self.steps.values():
                if s.resource.type == kind:
                    self._delete(s)
        if volumes:
            for name in sorted(self.volume_names()):
                try:
                    self.engine.call("DELETE", f"/volumes/{name}", missing_ok=True)
                except EngineError as exc:
                    self._log(f"volume {name} not removed: {exc}")

    def purge(self) -> None:
        """Remove what an interrupted earlier run of this stack left, by name (labelled as this stack's only)."""
        ours = {"banyan.project": self.rendering.project, "banyan.stack": self.rendering.stack}
        label_filter = [f"{k}={v}" for k, v in ours.items()]
        for kind, path in (("services", "/services"),):
            for found in self.engine.call("GET", path, query={"filters": {"label": label_filter}}) or []:
                self.engine.call("DELETE", f"/{kind}/{found['ID']}", missing_ok=True)
        self.steps, saved = {}, self.steps
        self.down(volumes=True)
        self.steps = saved
        for kind in ("configs", "secrets"):
            for found in self.engine.call("GET", f"/{kind}", query={"filters": {"label": label_filter}}) or []:
                self.engine.call("DELETE", f"/{kind}/{found['ID']}", missing_ok=True)
        for step in self.steps.values():
            if step.resource.type == NETWORK:
                self.engine.call("DELETE", f"/networks/{step.inputs['name']}", missing_ok=True)
        for name in self.volume_names():
            self.engine.call("DELETE", f"/volumes/{name}", missing_ok=True)

    # -- queries

    def volume_names(self) -> set[str]:
        return {m["source"] for s in self.steps.values() if s.resource.type == SERVICE
                for m in s.inputs["taskSpec"]["containerSpec"].get("mounts") or [] if m["type"] == "volume"}

    def service(self, instance: str) -> SwarmStep:
        for s in self.steps.values():
            if s.resource.type == SERVICE and s.instance == instance:
                return s
        raise KeyError(instance)

    def service_id(self, instance: str) -> str:
        return self._id(f"{self.service(instance).resource.name}-id")

    def inspect(self, instance: str) -> dict[str, Any]:
        found: dict[str, Any] = self.engine.call("GET", f"/services/{self.service_id(instance)}")
        return found

    def containers(self, instance: str) -> list[str]:
        """The running containers of the service's running tasks, by slot."""
        tasks = [t for t in self.tasks(self.service_id(instance)) if t["Status"]["State"] == "running"]
        return [t["Status"]["ContainerStatus"]["ContainerID"] for t in sorted(tasks, key=lambda t: t.get("Slot", 0))]

    def exec(self, instance: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
             task: int = 0, timeout_s: float = 60) -> ExecResult:
        container = self.containers(instance)[task]
        body: dict[str, Any] = {"AttachStdout": True, "AttachStderr": True, "Cmd": list(argv)}
        if env:
            body["Env"] = [f"{k}={v}" for k, v in env.items()]
        made = self.engine.call("POST", f"/containers/{container}/exec", json_body=body)
        status, raw = self.engine.request("POST", f"/exec/{made['Id']}/start",
                                          body=json.dumps({"Detach": False, "Tty": False}).encode(),
                                          timeout_s=timeout_s)
        if status >= 400:
            raise EngineError(f"exec in {instance}", status, raw.decode(errors="replace"))
        result = self.engine.call("GET", f"/exec/{made['Id']}/json")
        out, err = demux(raw)
        return ExecResult(int(result["ExitCode"]), out.decode(errors="replace"), err.decode(errors="replace"))

    def logs(self, instance: str) -> str:
        """Every task's output of the service (as `docker service logs`)."""
        status, raw = self.engine.request("GET", f"/services/{self.service_id(instance)}/logs",
                                          query={"stdout": True, "stderr": True})
        return _stream_text(raw) if status < 400 else ""

    def secret(self, part: str, key: str) -> str:
        """The value of `part`'s secret `key`, for checks that log in with it."""
        slug = f"-{part}-{key.lower().replace('_', '-')}-"
        for s in self.steps.values():
            if s.resource.type == SECRET and slug in s.inputs["name"]:
                return base64.b64decode(s.inputs["data"]).decode()
        raise KeyError(f"{part} {key}")

    def spec_drift(self) -> dict[str, list[str]]:
        """Where each service's spec on the engine differs from the one this rendering sends: what a second
        apply would change. Empty when the engine holds exactly what was rendered."""
        out: dict[str, list[str]] = {}
        for s in self.steps.values():
            if s.resource.type != SERVICE:
                continue
            want = self.service_spec(s.inputs)
            got = self.engine.call("GET", f"/services/{self._id(s.resource.name + '-id')}")["Spec"]
            problems = list(_differences(want, got, ""))
            if problems:
                out[s.instance] = problems
        return out

    def iter_services(self) -> Iterator[SwarmStep]:
        return (s for s in self.steps.values() if s.resource.type == SERVICE)


def _differences(want: Any, got: Any, path: str) -> Iterator[str]:
    """Where `got` (the engine's) departs from `want` (the request) in what the request sets."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            yield f"{path}: engine has {got!r}"
            return
        for k, v in want.items():
            if v in ({}, [], None) and k not in got:
                continue
            yield from _differences(v, got.get(k), f"{path}.{k}")
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            yield f"{path}: engine has {got!r}, rendered {want!r}"
            return
        for i, (a, b) in enumerate(zip(want, got, strict=True)):
            yield from _differences(a, b, f"{path}[{i}]")
    elif want != got and not (got is None and want in (0, "", False)):
        # The engine omits zero values from its JSON (Go's omitempty): 0 s and no value are the same to it.
        yield f"{path}: engine has {got!r}, rendered {want!r}"
