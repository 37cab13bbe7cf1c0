"""The prod stack's Kubernetes objects through a real kube-apiserver (scripts/kube-apiserver).

What the server checks that the mock-based stack tests cannot: its own validation and defaulting,
admission (Pod Security "restricted" on the pods the workloads would create, ServiceAccount,
NamespaceLifecycle), the CRDs' structural schemas and CEL rules for the operators' custom resources,
strict field validation, and immutable fields when one tier's objects are applied over another's.

- Every tier's objects are server-side applied with dryRun=All into the stack's namespace.
- Each workload's pod template is submitted (dry run) as the Pod its controller would create: Pod
  Security admission judges Pods, not Deployments (no controller manager or kubelet runs here).
- For every ordered pair of tiers (A, B): A is applied for real, B is dry-run applied over it the way
  Pulumi would send it (ignore_changes paths keep A's inputs; a resource whose replace_on_changes paths
  differ is replaced, so only its deletion is checked here and its creation by the tier's dry run);
  A is then deleted.

Where today's objects are refused, the case is xfail(strict=True) with the server's message: it flips
to a failure when fixed, so the entry below is removed with the fix. Without the binaries the tests
skip (run `scripts/kube-apiserver build`); with BANYAN_REQUIRE_APISERVER=1 (CI) they fail instead.
"""

from __future__ import annotations

import copy
import functools
import importlib
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from tests.e2e.apiserver.apiserver import (
    REFUSALS,
    REPO_ROOT,
    REQUIRE_ENV,
    WARNED,
    ApiServer,
    ApiServerUnavailableError,
    Client,
    Response,
    ServerRejectedError,
    rejection,
    required,
)

STACK = "prod"
TIERS = ("small", "medium", "large")
# Stacks beyond the tiers' own, dry-run applied like them: every service scaled on queue depth by KEDA (a
# ScaledObject in place of its HPA, the TriggerAuthentication, the monitoring user's User and Permission).
VARIANTS: dict[str, dict[str, Any]] = {
    "large-queue-scaling": {"tier": "large", "services[0].queue_scaling.enabled": True,
                            "services[1].queue_scaling.enabled": True,
                            "services[1].queue_scaling.queues": ["service.order-service.commands.PlaceOrder"]},
    # The monitoring part: its PodMonitors and PrometheusRule (the Prometheus Operator's CRDs are installed), and
    # its sidecars in the Redis and Nginx pods (the Redis exporter; mtail, a native sidecar, with an mtail image).
    "large-monitoring": {"tier": "large", "monitoring.enabled": True,
                         "monitoring.mtail_image": "banyan-local/mtail:bookworm-3.0.0"},
}
FIELD_MANAGER = "banyan-e2e"
# What the controller manager would create in a new namespace; none runs here.
NAMESPACE_MANAGER = "banyan-e2e-namespace"
CRD_DIR = REPO_ROOT.parent / "shared" / "schemas" / "crds"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
POD_SECURITY = "pod-security.kubernetes.io/"


# ---- the rendered stack ------------------------------------------------------------------------

@dataclass(frozen=True)
class StackObject:
    """One Kubernetes object the stack applies, as the provider would send it, with its options."""

    manifest: dict[str, Any]
    ignore_changes: tuple[str, ...]
    replace_on_changes: tuple[str, ...]

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


def _render_stack() -> Callable[..., Any]:
    """render_stack from infra.testing (its alias after the package restructuring: testkit)."""
    for module in ("infra.testing", "testkit", "testkit.render"):
        try:
            found = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is not None and module.startswith(err.name):
                continue
            raise
        if hasattr(found, "render_stack"):
            render: Callable[..., Any] = found.render_stack
            return render
    raise ImportError("render_stack is in neither infra.testing nor testkit")


@cache
def rendered(tier: str) -> tuple[StackObject, ...]:
    rendering = _render_stack()(STACK, set=VARIANTS.get(tier, {"tier": tier}))
    objects = []
    for resource in rendering.resources:
        if not resource.type.startswith("kubernetes:") or resource.type == HELM_RELEASE:
            continue
        objects.append(StackObject(copy.deepcopy(resource.plain_inputs), tuple(resource.ignore_changes),
                                   tuple(resource.replace_on_changes)))
    return tuple(objects)


def pod_for(obj: StackObject) -> dict[str, Any] | None:
    """The Pod a workload's controller would create from its template (None for other kinds)."""
    spec = obj.manifest.get("spec", {})
    if obj.kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        template = spec["template"]
    elif obj.kind == "CronJob":
        template = spec["jobTemplate"]["spec"]["template"]
    else:
        return None
    pod_spec = copy.deepcopy(template["spec"])
    if obj.kind == "StatefulSet":
        # What the StatefulSet controller adds: a volume per claim template, its pod's DNS identity.
        claims = [{"name": c["metadata"]["name"],
                   "persistentVolumeClaim": {"claimName": f"{c['metadata']['name']}-{obj.name}-0"}}
                  for c in spec.get("volumeClaimTemplates", [])]
        pod_spec["volumes"] = [*pod_spec.get("volumes", []), *claims]
        pod_spec.setdefault("hostname", f"{obj.name}-0")
        if spec.get("serviceName"):
            pod_spec.setdefault("subdomain", spec["serviceName"])
    metadata = template.get("metadata", {})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{obj.kind.lower()}-{obj.name}", "namespace": obj.manifest["metadata"]["namespace"],
                         "labels": dict(metadata.get("labels", {})),
                         "annotations": dict(metadata.get("annotations", {}))},
            "spec": pod_spec}


def _get_path(obj: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = obj
    for step in path.split("."):
        if not isinstance(node, Mapping) or step not in node:
            return False, None
        node = node[step]
    return True, node


def _set_path(obj: dict[str, Any], path: str, present: bool, value: Any) -> None:
    *parents, last = path.split(".")
    node = obj
    for step in parents:
        node = node.setdefault(step, {})
    if present:
        node[last] = copy.deepcopy(value)
    else:
        node.pop(last, None)


def as_update(old: StackObject, new: StackObject) -> dict[str, Any]:
    """What Pulumi sends to update `old` to `new`: ignore_changes paths keep the old inputs."""
    body = copy.deepcopy(new.manifest)
    for path in new.ignore_changes:
        assert "[" not in path, f"{new.key}: ignore_changes path {path} (indexes not supported here)"
        _set_path(body, path, *_get_path(old.manifest, path))
    return body


def is_replacement(old: StackObject, new: StackObject) -> bool:
    """Pulumi replaces (deletes and creates) instead of updating when a replace_on_changes path differs."""
    return any(_get_path(old.manifest, p) != _get_path(new.manifest, p) for p in new.replace_on_changes)


# ---- known rejections (the server's messages for today's objects) -----------------------------

# (test, case id) -> the server's message. Each one is xfail(strict=True): fix the object, and the
# test passes, strict xfail fails the run, and the entry is removed with the fix. Measured against
# Kubernetes v1.34.4 (scripts/kube-apiserver). None today: every pod is admitted under the namespace's
# own Pod Security labels ("restricted", enforced).
KNOWN: dict[tuple[str, str], str] = {}


def _case(test: str, case_id: str, *values: Any) -> Any:
    known = KNOWN.get((test, case_id))
    marks = [pytest.mark.xfail(strict=True, raises=ServerRejectedError, reason=known)] if known else []
    return pytest.param(*values, known, id=case_id, marks=marks)


def dry_run_cases() -> list[Any]:
    return [_case("dry_run", f"{tier}-{o.key}", tier, o.key) for tier in (*TIERS, *VARIANTS) for o in rendered(tier)]


def pod_cases() -> list[Any]:
    return [_case("pod", f"{tier}-{o.key}", tier, o.key) for tier in (*TIERS, *VARIANTS) for o in rendered(tier)
            if pod_for(o) is not None]


def move_cases() -> list[Any]:
    return [_case("move", f"{a}-to-{b}-{o.key}", a, b, o.key)
            for a, b in itertools.permutations(TIERS, 2) for o in rendered(b)]


def expect_accepted(test: str, obj: Mapping[str, Any], response: Response, known: str | None) -> None:
    """Pass if the server accepted; raise ServerRejectedError with its message if not (an xfail when known).

    A known case refused for another reason than recorded fails outright.
    """
    if response.ok:
        return
    refused = rejection(obj, response)
    REFUSALS.append((test, refused))
    if known is not None and refused.message != known:
        raise AssertionError(f"refused, but not as recorded:\n  now:      {refused.message}\n  recorded: {known}")
    raise ServerRejectedError(refused)


def by_key(tier: str, key: str) -> StackObject:
    return next(o for o in rendered(tier) if o.key == key)


# ---- fixtures ------------------------------------------------------------------------------------

def _unavailable(reason: str) -> None:
    if required():
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServer]:
    api = ApiServer()
    try:
        api.start()
    except ApiServerUnavailableError as err:
        api.stop()
        _unavailable(str(err))
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture(scope="module")
def cluster(server: ApiServer) -> Client:
    """The server with every CRD of ../shared/schemas/crds installed and the stack's namespace(s)."""
    if not CRD_DIR.is_dir():
        pytest.skip(f"{CRD_DIR} is absent (CI lays ../shared beside the clone): no CRDs for the operators' "
                    "custom resources")
    client = server.client()
    try:
        _prepare(client)
    except ServerRejectedError as err:
        # Not an xfail of the tests that need it: the setup itself was refused.
        pytest.fail(f"setting up the cluster was refused: {err}")
    return client


def _prepare(client: Client) -> None:
    client.install_crds(sorted(CRD_DIR.glob("*.yaml")), field_manager=FIELD_MANAGER)
    namespaces = [o for o in rendered(TIERS[0]) if o.kind == "Namespace"]
    assert namespaces, "the stack renders no Namespace"
    for ns in namespaces:
        # The Namespace exactly as the stack renders it: admission then judges the pods by the stack's own
        # Pod Security labels, never by labels this suite would add.
        labels = ns.manifest["metadata"].get("labels", {})
        carried = {k: v for k, v in labels.items() if k.startswith(POD_SECURITY)}
        assert carried.get(f"{POD_SECURITY}enforce") == "restricted", (
            f"the rendered Namespace {ns.name} does not enforce Pod Security restricted (its labels: {labels})")
        expect_accepted("namespace", ns.manifest, client.apply(ns.manifest, field_manager=FIELD_MANAGER,
                                                               dry_run=False), None)
        # What the controller manager's service-account controller would create (none runs here).
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns.name}}
        expect_accepted("namespace", account, client.apply(account, field_manager=NAMESPACE_MANAGER,
                                                           dry_run=False), None)


@dataclass(frozen=True)
class Step:
    how: str  # "update", "create" or "replace" (the deletion of the old object, dry run)
    body: dict[str, Any]
    response: Response


class Moves:
    """Each ordered pair of tiers applied once (A for real, B dry-run over it), then A deleted."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.done: dict[tuple[str, str], dict[str, Step]] = {}

    def steps(self, a: str, b: str) -> dict[str, Step]:
        if (a, b) not in self.done:
            self.done[(a, b)] = self._move(a, b)
        return self.done[(a, b)]

    def _move(self, a: str, b: str) -> dict[str, Step]:
        client = self.client
        live: dict[str, StackObject] = {}
        applied: list[StackObject] = []
        try:
            for obj in rendered(a):
                response = client.apply(obj.manifest, field_manager=FIELD_MANAGER, dry_run=False)
                if response.ok:
                    live[obj.key] = obj
                    applied.append(obj)
                else:
                    REFUSALS.append((f"apply {a}", rejection(obj.manifest, response)))
            steps: dict[str, Step] = {}
            for new in rendered(b):
                old = live.get(new.key)
                if old is None:
                    steps[new.key] = Step("create", new.manifest, client.apply(
                        new.manifest, field_manager=FIELD_MANAGER, dry_run=True))
                elif is_replacement(old, new):
                    steps[new.key] = Step("replace", old.manifest, client.delete(old.manifest, dry_run=True))
                else:
                    body = as_update(old, new)
                    steps[new.key] = Step("update", body, client.apply(body, field_manager=FIELD_MANAGER,
                                                                       dry_run=True))
            return steps
        finally:
            for obj in reversed(applied):
                if obj.kind == "Namespace":
                    continue
                client.delete(obj.manifest)
                client.wait_until(f"{obj.key} deleted", functools.partial(client.gone, obj.manifest))


@pytest.fixture(scope="module")
def moves(cluster: Client) -> Moves:
    return Moves(cluster)


# ---- tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("tier", "key", "known"), dry_run_cases())
def test_dry_run_apply(cluster: Client, tier: str, key: str, known: str | None) -> None:
    """The tier's object, server-side applied with dryRun=All into the (otherwise empty) namespace."""
    obj = by_key(tier, key)
    response = cluster.apply(obj.manifest, field_manager=FIELD_MANAGER, dry_run=True)
    WARNED.extend((f"dry_run {obj.key}", w) for w in response.warnings)
    expect_accepted("dry_run", obj.manifest, response, known)


@pytest.mark.parametrize(("tier", "key", "known"), pod_cases())
def test_workload_pods_admitted(cluster: Client, tier: str, key: str, known: str | None) -> None:
    """The Pod the workload's controller would create passes admission (Pod Security restricted)."""
    pod = pod_for(by_key(tier, key))
    assert pod is not None
    expect_accepted("pod", pod, cluster.create(pod, dry_run=True), known)


@pytest.mark.parametrize(("a", "b", "key", "known"), move_cases())
def test_tier_move(moves: Moves, a: str, b: str, key: str, known: str | None) -> None:
    """Tier B's object over tier A's live objects, as Pulumi would update (or replace) it."""
    step = moves.steps(a, b)[key]
    expect_accepted(f"move {a}->{b} ({step.how})", step.body, step.response, known)


def test_every_tier_renders_objects_for_the_server() -> None:
    """The suite checks something: every tier renders workloads, custom resources and a Namespace."""
    for tier in TIERS:
        kinds = {o.kind for o in rendered(tier)}
        assert {"Namespace", "Deployment", "StatefulSet", "Cluster", "RabbitmqCluster"} <= kinds, (tier, kinds)
        assert all(o.manifest["metadata"].get("name") for o in rendered(tier))
    kinds = {o.kind for o in rendered("large-queue-scaling")}
    assert {"ScaledObject", "TriggerAuthentication", "User", "Permission"} <= kinds, kinds
    assert "HorizontalPodAutoscaler/user-service" not in {o.key for o in rendered("large-queue-scaling")}


@pytest.mark.parametrize("tier", TIERS)
def test_the_namespace_enforces_restricted(cluster: Client, tier: str) -> None:
    """The admission above can fail: in the stack's namespace, as its rendered labels configure it, a pod
    that runs as root with the default capabilities is refused (the nginx pod of before the fix)."""
    nginx = pod_for(by_key(tier, "Deployment/nginx"))
    assert nginx is not None
    pod = copy.deepcopy(nginx)
    pod["metadata"]["name"] = "root-nginx"
    pod["spec"].pop("securityContext", None)
    for container in pod["spec"]["containers"]:
        container["securityContext"] = {"allowPrivilegeEscalation": False}
    response = cluster.create(pod, dry_run=True)
    assert not response.ok, "a root pod with default capabilities was admitted"
    namespace = next(o for o in rendered(tier) if o.kind == "Namespace")
    version = namespace.manifest["metadata"]["labels"][f"{POD_SECURITY}enforce-version"]
    assert f'violates PodSecurity "restricted:{version}"' in response.message, response.message
    assert "runAsNonRoot != true" in response.message and "unrestricted capabilities" in response.message
