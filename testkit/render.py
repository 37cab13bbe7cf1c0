"""Render a stack under Pulumi's mocks and query what it registered: for our tests and for users' own.

    from testkit import render_stack
    rendering = render_stack("dev", set={"tier": "large"})
    gateways = rendering.named_like("docker:index/container:Container", "banyan-gateway-")
    assert len(gateways) == 10

No Pulumi CLI, engine, Docker or cluster is involved: the program runs in-process against a mock
resource monitor that records every registration (type, name, parent, inputs as the provider would
receive them, and resource options).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import itertools
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_in_stack

from model.preflight import EngineSnapshot
from model.preflight_kubernetes import KubernetesSnapshot

PROJECT_DIR = Path(__file__).resolve().parent.parent
UNKNOWN_SENTINEL = rpc.UNKNOWN
_SECRET_SIG = rpc._special_secret_sig
_SIG_KEY = rpc._special_sig_key


@dataclass(frozen=True)
class Secret:
    """A value that travelled as a Pulumi secret. Its repr never shows the value."""

    value: Any

    def __repr__(self) -> str:
        return "Secret([redacted])"


class Unknown:
    """A value not known until the provider creates the resource (shown as such, never invented)."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = Unknown()


def _decode(value: Any) -> Any:
    """Wire values -> Python: secrets wrapped in Secret, unknowns as UNKNOWN, whole floats as ints."""
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            return Secret(_decode(value.get("value")))
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value == UNKNOWN_SENTINEL:
        return UNKNOWN
    return value


def unwrap(value: Any) -> Any:
    """The same value with every Secret replaced by what it holds."""
    if isinstance(value, Secret):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def walk_plain(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf that is *not* inside a Secret, with its path: where a leaked secret would show."""
    if isinstance(value, Secret):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk_plain(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk_plain(v, f"{path}[{i}]")
    else:
        yield path, value


@dataclass
class RecordedResource:
    type: str
    name: str
    urn: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    protect: bool
    retain_on_delete: bool
    depends_on: tuple[str, ...]
    delete_before_replace: bool
    ignore_changes: tuple[str, ...]
    replace_on_changes: tuple[str, ...]
    aliases: tuple[str, ...]
    provider: str | None
    additional_secret_outputs: tuple[str, ...]
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def plain_inputs(self) -> dict[str, Any]:
        plain: dict[str, Any] = unwrap(self.inputs)
        return plain


@dataclass
class Rendering:
    """Everything one program run registered, in registration order."""

    project: str
    stack: str
    resources: list[RecordedResource]
    stack_outputs: dict[str, Any]
    log: list[tuple[str, str]]

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_]

    def named_like(self, type_: str, prefix: str) -> list[RecordedResource]:
        return [r for r in self.of_type(type_) if r.name.startswith(prefix)]

    def get(self, type_: str, name: str) -> RecordedResource:
        found = [r for r in self.of_type(type_) if r.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources of type {type_} named {name!r}")
        return found[0]

    def by_urn(self, urn: str) -> RecordedResource:
        for r in self.resources:
            if r.urn == urn:
                return r
        raise KeyError(urn)

    def children(self, parent: RecordedResource) -> list[RecordedResource]:
        return [r for r in self.resources if r.parent == parent.urn]

    @property
    def warnings(self) -> list[str]:
        return [msg for level, msg in self.log if level == "warning"]


def mock_secret_value(name: str) -> str:
    """The value the mocks give a generated secret: distinctive, so a leak can be searched for."""
    return "mocksecret" + hashlib.sha256(name.encode()).hexdigest()[:20]


class BanyanMocks(pulumi.runtime.Mocks):
    """Echo inputs as outputs; give generated passwords and keys a distinctive secret-looking value."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ.startswith("random:index/random"):
            state.setdefault("result", mock_secret_value(args.name))
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class PreviewMocks(pulumi.runtime.Mocks):
    """What `pulumi preview` knows before anything exists: inputs, but no ids and no computed outputs.

    Values that depend on them (a generated password, an id) stay unknown instead of taking a made-up value.
    """

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        return "", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, also keeping each registration's inputs and options as sent."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.recorded: list[RecordedResource] = []
        self.stack_outputs: dict[str, Any] = {}
        self._stack_urn = ""

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            self._stack_urn = response.urn
            return response
        inputs = _decode(json_format.MessageToDict(request.object))
        self.recorded.append(
            RecordedResource(
                type=request.type,
                name=request.name,
                urn=response.urn,
                parent=request.parent or None,
                custom=bool(request.custom),
                inputs=inputs,
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                depends_on=tuple(request.dependencies),
                delete_before_replace=bool(request.deleteBeforeReplace),
                ignore_changes=tuple(request.ignoreChanges),
                replace_on_changes=tuple(request.replaceOnChanges),
                aliases=tuple(str(a) for a in request.aliases),
                provider=request.provider or None,
                additional_secret_outputs=tuple(request.additionalSecretOutputs),
            )
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802
        outputs = _decode(json_format.MessageToDict(request.outputs))
        if request.urn == self._stack_urn:
            self.stack_outputs = outputs
        else:
            for r in self.recorded:
                if r.urn == request.urn:
                    r.outputs = outputs
        return super().RegisterResourceOutputs(request)


class _LogCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelname.lower(), record.getMessage()))


# ---- stack files -----------------------------------------------------------------------------

# Keys below the top may be upper case: env variable names (services[0].env.LOG_LEVEL).
_SET_KEY = re.compile(r"^(?:banyan:)?([a-z_]+)((?:\.[A-Za-z_][A-Za-z0-9_]*|\.\d+|\[\d+\])*)$")


class NoStackFileError(LookupError):
    """The stack named has no Pulumi.<stack>.yaml; the message names the stacks there are."""


class StackFileError(ValueError):
    """A project or stack file that cannot be read as it stands, in one line: `Pulumi.dev.yaml:12: what`."""


def _refuse_duplicates(node: yaml.Node, file: str, path: str) -> None:
    """PyYAML keeps the last of two equal keys; the file's author meant one of them, so neither is guessed."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            if key is None or key == "<<":
                continue
            where = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in seen:
                shown = where.removeprefix("config.") if where != "config" else where
                raise StackFileError(f"{file}:{line}: duplicate key {shown} (first at line {seen[key]})")
            seen[key] = line
            _refuse_duplicates(value_node, file, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicates(item, file, f"{path}[{i}]")


def load_yaml_file(path: Path, *, config_section: bool = False) -> Any:
    """A YAML file as data; a syntax error, a duplicated key (or, with `config_section`, a stack file whose
    top or `config:` is not a mapping) raises StackFileError naming the file and the line."""
    loader = yaml.SafeLoader(path.read_text())
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if config_section:
            if not isinstance(node, yaml.MappingNode):
                raise StackFileError(f"{path.name}:{node.start_mark.line + 1}: a stack file must be a mapping with "
                                     "a config: section")
            for key_node, value_node in node.value:
                if getattr(key_node, "value", None) == "config" and not (
                        isinstance(value_node, yaml.MappingNode) or value_node.tag.endswith(":null")):
                    raise StackFileError(f"{path.name}:{value_node.start_mark.line + 1}: config: must be a mapping "
                                         "of keys to values")
        _refuse_duplicates(node, path.name, "")
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        what = err.problem or err.context or "not YAML"
        if err.context and err.context_mark is not None and err.problem:
            what += f" ({err.context} at line {err.context_mark.line + 1})"
        raise StackFileError(f"{path.name}:{mark.line + 1 if mark else 1}: {what}") from None
    except yaml.YAMLError as err:
        raise StackFileError(f"{path.name}: {' '.join(str(err).split())}") from None
    finally:
        loader.dispose()


def read_stack_file(stack: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """The `config:` map of Pulumi.<stack>.yaml, as YAML data (StackFileError where it cannot be read)."""
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in project_dir.glob("Pulumi.*.yaml"))
        raise NoStackFileError(f"no stack file {path.name} in {project_dir}; the stacks there: {', '.join(known)}")
    data = load_yaml_file(path, config_section=True) or {}
    return dict(data.get("config") or {})


def apply_sets(config: Mapping[str, Any], sets: Mapping[str, Any]) -> dict[str, Any]:
    """What-if overrides: {"tier": "large", "postgres.replicas": 3, "services[0].instances": 5}
    (`services.0.instances` works too).

    String values are read as YAML ("3" -> 3, "true" -> True), as on a command line.
    """
    out: dict[str, Any] = json.loads(json.dumps(config))
    for key, value in sets.items():
        match = _SET_KEY.match(key)
        if not match:
            raise ValueError(
                f"cannot set {key!r}: expected a key like tier, postgres.replicas or services[0].instances"
            )
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as err:
                problem = getattr(err, "problem", None) or str(err).splitlines()[0]
                raise ValueError(f"--set {key}={value}: not a YAML value ({problem})") from None
        top, rest = f"banyan:{match.group(1)}", match.group(2)
        steps: list[str | int] = [
            int(s.strip(".[]")) if s.strip(".[]").isdigit() else s[1:]
            for s in re.findall(r"\.[A-Za-z_][A-Za-z0-9_]*|\.\d+|\[\d+\]", rest)
        ]
        if not steps:
            out[top] = value
            continue
        node = out.setdefault(top, {} if isinstance(steps[0], str) else [])
        for step, following in itertools.pairwise(steps):
            empty: Any = {} if isinstance(following, str) else []
            node = node[step] if isinstance(step, int) else node.setdefault(step, empty)
        last = steps[-1]
        node[last] = value
    return out


def to_engine_config(config: Mapping[str, Any]) -> tuple[dict[str, str], frozenset[str]]:
    """Stack-file data -> what the engine hands the program: strings, structured values as JSON.

    `secure:` values cannot be decrypted here; they become a stand-in and their key is marked secret.
    """
    raw: dict[str, str] = {}
    secret: set[str] = set()

    def strip_secure(value: Any, key: str) -> Any:
        if isinstance(value, dict):
            if set(value) == {"secure"}:
                secret.add(key)
                return mock_secret_value(key)
            return {k: strip_secure(v, key) for k, v in value.items()}
        if isinstance(value, list):
            return [strip_secure(v, key) for v in value]
        return value

    for key, value in config.items():
        value = strip_secure(value, key)
        if isinstance(value, (dict, list)):
            raw[key] = json.dumps(value)
        elif isinstance(value, bool):
            raw[key] = "true" if value else "false"
        else:
            raw[key] = str(value)
    return raw, frozenset(secret)


def project_name(project_dir: Path = PROJECT_DIR) -> str:
    project = load_yaml_file(project_dir / "Pulumi.yaml")
    if not isinstance(project, dict) or "name" not in project:
        raise StackFileError("Pulumi.yaml:1: the project file must be a mapping with a name:")
    return str(project["name"])


# ---- rendering ---------------------------------------------------------------------------------

def render_program(program: Callable[[], None], raw_config: Mapping[str, str], *, project: str, stack: str,
                   secret_keys: frozenset[str] = frozenset(), preview: bool = False,
                   mocks: pulumi.runtime.Mocks | None = None) -> Rendering:
    """Run `program` under mocks in a fresh event loop and return what it registered. Called from a coroutine
    (an async test), it runs in a worker thread: Pulumi's runtime needs an event loop of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="banyan-render") as pool:
            return pool.submit(render_program, program, raw_config, project=project, stack=stack,
                               secret_keys=secret_keys, preview=preview, mocks=mocks).result()
    monitor = RecordingMonitor(mocks or BanyanMocks())
    collector = _LogCollector()
    logger = logging.getLogger(f"banyan.testing.{stack}")
    logger.propagate = False
    logger.handlers[:] = [collector]
    logger.setLevel(logging.INFO)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        settings.ROOT.set(None)
        settings.configure(
            pulumi_mocks.MockSettings(
                monitor=monitor,
                monitor_features=set(monitor.GetDeploymentInfo(None).supportedFeatures),
                engine=pulumi_mocks.MockEngine(logger),
                project=project,
                stack=stack,
                dry_run=preview,
                organization="organization",
                callbacks=None,
            )
        )
        set_all_config(dict(raw_config), sorted(secret_keys))
        loop.run_until_complete(run_in_stack(program))
    finally:
        set_all_config({}, [])
        settings.ROOT.set(None)
        _close(loop)
    return Rendering(project, stack, monitor.recorded, monitor.stack_outputs, collector.records)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Close the loop with nothing left on it: a task still pending (an output nobody awaited after an error)
    would otherwise be destroyed with the loop at exit, printing "Task was destroyed but it is pending" or an
    event loop's __del__ traceback after a run that succeeded."""
    try:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def render_stack(stack: str, *, set: Mapping[str, Any] | None = None,
                 project_dir: Path = PROJECT_DIR, preview: bool = False,
                 program: Callable[[], None] | None = None,
                 engine: EngineSnapshot | None = None,
                 cluster: KubernetesSnapshot | None = None) -> Rendering:
    """Render Pulumi.<stack>.yaml (plus what-if overrides) through the real stack program under mocks.

    preview=False: as after `pulumi up` (ids and generated values are mock values, known).
    preview=True: as `pulumi preview` sees it (values computed by providers are unknown).
    engine: what the Docker preflight sees on the engine (model.preflight.EngineSnapshot); unset, the preflight
    is skipped, as it always is under mocks: no real engine is ever read.
    cluster: the same for the Kubernetes preflight (model.preflight_kubernetes.KubernetesSnapshot: the live
    RabbitmqCluster, Redis StatefulSet and CloudNativePG Cluster); no real cluster is ever read.
    """
    config = apply_sets(read_stack_file(stack, project_dir), set or {})
    raw, secret_keys = to_engine_config(config)
    if program is None:
        from infra.program import main

        program = main
    from infra.preflight import use_snapshot

    with (use_snapshot(engine) if engine is not None else contextlib.nullcontext(),
          use_snapshot(cluster) if cluster is not None else contextlib.nullcontext()):
        return render_program(program, raw, project=project_name(project_dir), stack=stack,
                              secret_keys=secret_keys, preview=preview, mocks=PreviewMocks() if preview else None)


def resolve_output(output: Any) -> Any:
    """The plain value of an Output (or any input), for use inside a mocked program.

    Fails, instead of guessing, when the value is unknown (as it would be during a preview).
    """
    from pulumi.runtime.sync_await import _sync_await

    out = pulumi.Output.from_input(output)
    if not _sync_await(out.is_known()):
        raise ValueError("the output is unknown until the resource is created")
    return _sync_await(out.future())


def version_sets(*, postgres: str | int | None = None, rabbitmq: str | None = None, redis: str | None = None,
                 nginx: str | None = None) -> dict[str, object]:
    """What a stack's config must say so its files are rendered for these server versions (`postgres` a major
    or a full version; the others full versions), with image references that name the same versions (the
    resolver checks image tag and version agree; nothing pulls them). Values as `--set` takes them: quoted
    where YAML would read 3.10 as the number 3.1."""
    sets: dict[str, object] = {}
    if postgres:
        sets["postgres.version"] = int(str(postgres).split(".")[0])
        sets["postgres.image"] = f"postgres:{postgres}-alpine"
    if rabbitmq:
        sets["rabbitmq.version"] = json.dumps(".".join(rabbitmq.split(".")[:2]))
        sets["rabbitmq.image"] = f"rabbitmq:{rabbitmq}-management-alpine"
    if redis:
        sets["redis.version"] = json.dumps(".".join(redis.split(".")[:2]))
        sets["redis.image"] = f"redis:{redis}-alpine"
    if nginx:
        sets["nginx.image"] = f"nginx:{nginx}-alpine"
    return sets
