"""RedisCluster on Kubernetes under Pulumi's mocks (the StatefulSet, its Services, files, secret and creation
Job), plus the node probes and the creation script's re-run and growth behaviour on real redis-servers."""

from __future__ import annotations

from functools import cache
from typing import Any

import pulumi
import pytest

from components.redis import RedisCluster
from components.redis.component import TYPE
from components.redis.config import (
    CONF_DIR,
    CONF_PATH,
    CREATE_PATH,
    DATA_DIR,
    START_PATH,
    render_cluster_create_script,
    render_redis_conf,
    render_start_script,
)
from components.redis.kubernetes import CREATE_KEY, NODES_ANNOTATION, START_KEY, probe_commands
from model.spec import PlatformSpec, RedisSpec
from model.tiers import TIERS
from testkit import (
    BanyanMocks,
    RecordedResource,
    Rendering,
    Secret,
    mock_secret_value,
    unwrap,
    walk_plain,
)
from testkit.component import Scaffold, render_component
from testkit.k8s_check import KUBERNETES_VERSION, builtin_problems
from tests.helpers import spec_for, waited_on, waited_on_output

STATEFULSET = "kubernetes:apps/v1:StatefulSet"
JOB = "kubernetes:batch/v1:Job"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
SERVICE = "kubernetes:core/v1:Service"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NAMESPACE = "kubernetes:core/v1:Namespace"
PASSWORD = mock_secret_value("secrets-redis")
APP_PASSWORD = mock_secret_value("secrets-redis-app")
TIER_NAMES = ("small", "medium", "large")
# What pulumi-kubernetes replaces a StatefulSet for (forceNew in provider/pkg/provider/diff.go), besides
# metadata.name and metadata.namespace; Kubernetes itself refuses to change any of them in place.
STATEFULSET_FORCE_NEW = ("podManagementPolicy", "revisionHistoryLimit", "selector", "serviceName",
                         "volumeClaimTemplates")
REDIS_SELECTOR = {"app.kubernetes.io/name": "redis", "app.kubernetes.io/instance": "prod"}
CREATE_SELECTOR = {"app.kubernetes.io/name": "redis-cluster-create", "app.kubernetes.io/instance": "prod"}


def render(spec: PlatformSpec, mocks: pulumi.runtime.Mocks | None = None) -> tuple[Rendering, dict[str, Any]]:
    def build(s: Scaffold) -> dict[str, Any]:
        redis = RedisCluster("platform-redis", spec.redis, credentials=s.secrets.redis, target=s.target, opts=s.child)
        return {"hosts": redis.hosts, "port": redis.port, "mode": redis.mode, "wait_on": len(waited_on(redis))}

    return render_component(spec, build, mocks=mocks)


@cache
def rendered(tier: str, protect: bool = True) -> tuple[PlatformSpec, Rendering, dict[str, Any]]:
    spec = spec_for("prod", tier=tier, protect=protect)
    rendering, seen = render(spec)
    return spec, rendering, seen


def objects(rendering: Rendering) -> list[RecordedResource]:
    """The component's Kubernetes objects (the test's Namespace excluded)."""
    return [r for r in rendering.resources if r.type.startswith("kubernetes:") and r.type != NAMESPACE]


def one(rendering: Rendering, type_: str) -> RecordedResource:
    (found,) = rendering.of_type(type_)
    return found


def plain(r: RecordedResource) -> dict[str, Any]:
    return r.plain_inputs


def pod_spec(r: RecordedResource) -> dict[str, Any]:
    spec: dict[str, Any] = plain(r)["spec"]["template"]["spec"]
    return spec


def pod_labels(r: RecordedResource) -> dict[str, str]:
    labels: dict[str, str] = plain(r)["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def fqdn(i: int) -> str:
    return f"redis-node-{i}.redis-node.banyan.svc.cluster.local"


# ---- the objects --------------------------------------------------------------------------------------

@pytest.mark.parametrize("tier", TIER_NAMES)
def test_every_object_validates_strictly(tier: str) -> None:
    _, rendering, _ = rendered(tier)
    kinds = sorted(plain(r)["kind"] for r in objects(rendering))
    cluster = tier != "small"
    expected = ["ConfigMap", "Secret", "Service", "StatefulSet"] + (["Job", "PodDisruptionBudget"] if cluster else [])
    assert kinds == sorted(expected)
    problems = {f"{plain(r)['kind']} {r.name}": builtin_problems(r.inputs) for r in objects(rendering)}
    assert {k: v for k, v in problems.items() if v} == {}, f"Kubernetes {KUBERNETES_VERSION}"


@pytest.mark.parametrize("tier", TIER_NAMES)
def test_replicas_resources_and_storage_follow_the_tier(tier: str) -> None:
    spec, rendering, seen = rendered(tier)
    preset = TIERS[tier]
    sts = plain(one(rendering, STATEFULSET))
    assert sts["metadata"] == {"name": "redis-node", "namespace": "banyan", "labels": sts["metadata"]["labels"],
                               "annotations": {"banyan/redis-mode": spec.redis.mode}}
    assert sts["spec"]["replicas"] == preset.redis_nodes == spec.redis.nodes
    (container,) = pod_spec(one(rendering, STATEFULSET))["containers"]
    res = spec.redis.resources
    assert container["resources"] == {
        "limits": {"cpu": f"{res.limits.cpu_millis}m", "memory": f"{res.limits.memory_mib}Mi"},
        "requests": {"cpu": f"{res.requests.cpu_millis}m", "memory": f"{res.requests.memory_mib}Mi"},
    }
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == f"{preset.storage_gib['redis']}Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in claim["spec"], "unset: the cluster's default class"
    assert seen["hosts"] == [f"redis-node-{i}.redis-node" for i in range(preset.redis_nodes)]
    assert seen["port"] == 6379
    assert seen["mode"] == ("standalone" if tier == "small" else "cluster")
    assert seen["wait_on"] == (1 if tier == "small" else 2)
    assert len(rendering.of_type(PDB)) == (0 if tier == "small" else 1)
    assert len(rendering.of_type(JOB)) == (0 if tier == "small" else 1)


def test_the_storage_class_comes_from_the_spec() -> None:
    spec = spec_for("prod", tier="medium", kubernetes__storage_class="fast-ssd")
    rendering, _ = render(spec)
    (claim,) = plain(one(rendering, STATEFULSET))["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "fast-ssd"


@pytest.mark.parametrize("tier", TIER_NAMES)
def test_selectors_match_the_pods_and_only_them(tier: str) -> None:
    _, rendering, _ = rendered(tier)
    sts = one(rendering, STATEFULSET)
    labels = pod_labels(sts)
    assert plain(sts)["spec"]["selector"]["matchLabels"] == REDIS_SELECTOR
    assert selects(REDIS_SELECTOR, labels)
    (svc,) = [plain(s) for s in rendering.of_type(SERVICE)]
    assert svc["spec"]["selector"] == REDIS_SELECTOR
    for constraint in pod_spec(sts)["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == REDIS_SELECTOR
    for pdb in rendering.of_type(PDB):
        assert plain(pdb)["spec"]["selector"]["matchLabels"] == REDIS_SELECTOR
        assert plain(pdb)["spec"]["maxUnavailable"] == 1
    for job in rendering.of_type(JOB):
        job_labels = pod_labels(job)
        assert selects(CREATE_SELECTOR, job_labels)
        assert not selects(REDIS_SELECTOR, job_labels), "the nodes' Service and budget must not pick the Job's pod"


@pytest.mark.parametrize("tier", TIER_NAMES)
def test_the_headless_service_names_every_pod_before_it_is_ready(tier: str) -> None:
    spec, rendering, _ = rendered(tier)
    svc = plain(one(rendering, SERVICE))
    assert svc["metadata"]["name"] == plain(one(rendering, STATEFULSET))["spec"]["serviceName"] == "redis-node"
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    ports = {(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    (container,) = pod_spec(one(rendering, STATEFULSET))["containers"]
    container_ports = {(p["name"], p["containerPort"]) for p in container["ports"]}
    if spec.redis.mode == "cluster":
        assert ports == {("redis", 6379, 6379), ("cluster-bus", 16379, 16379)}
        assert container_ports == {("redis", 6379), ("cluster-bus", 16379)}
    else:
        assert ports == {("redis", 6379, 6379)}
        assert container_ports == {("redis", 6379)}


def expected_files(spec: RedisSpec) -> dict[str, str]:
    files = {f"redis-node-{i}.conf": render_redis_conf(spec, fqdn(i)) for i in range(spec.nodes)}
    files["start.sh"] = render_start_script(spec)
    if spec.mode == "cluster":
        files["create-cluster.sh"] = render_cluster_create_script(spec, [f"{fqdn(i)}:6379" for i in range(spec.nodes)])
    return files


@pytest.mark.parametrize("tier", TIER_NAMES)
def test_the_config_map_carries_exactly_the_rendered_files(tier: str) -> None:
    spec, rendering, _ = rendered(tier)
    cm = plain(one(rendering, CONFIG_MAP))
    assert cm["data"] == expected_files(spec.redis)
    # The Docker nodes' start script, byte for byte.
    assert cm["data"]["start.sh"] == render_start_script(spec.redis)
    assert cm["metadata"]["name"].startswith("redis-config-")
    for i in range(spec.redis.nodes):
        conf = cm["data"][f"redis-node-{i}.conf"]
        assert "requirepass" not in conf
        if spec.redis.mode == "cluster":
            assert f"cluster-announce-hostname {fqdn(i)}\n" in conf
            assert "cluster-config-file nodes.conf" in conf and f"dir {DATA_DIR}" in conf
        else:
            assert "cluster-enabled" not in conf
    if spec.redis.mode == "cluster":
        nodes = [f"{fqdn(i)}:6379" for i in range(spec.redis.nodes)]
        assert f'NODES="{" ".join(nodes)}"' in cm["data"][CREATE_KEY]


@pytest.mark.parametrize("tier", TIER_NAMES)
def test_each_pod_mounts_its_own_node_file_where_the_start_script_reads_it(tier: str) -> None:
    _, rendering, _ = rendered(tier)
    cm = plain(one(rendering, CONFIG_MAP))
    pod = pod_spec(one(rendering, STATEFULSET))
    (container,) = pod["containers"]
    assert container["command"] == ["/bin/sh", START_PATH]
    env = {e["name"]: e for e in container["env"]}
    assert [e["name"] for e in container["env"]] == sorted(env)
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[CONF_PATH]["subPathExpr"] == "$(POD_NAME).conf"
    assert mounts[START_PATH]["subPath"] == START_KEY
    assert mounts[DATA_DIR]["name"] == "data" == plain(one(rendering, STATEFULSET))["spec"]["volumeClaimTemplates"][
        0]["metadata"]["name"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[CONF_PATH]["name"]]["configMap"]["name"] == cm["metadata"]["name"]
    # Every pod the StatefulSet makes finds its file: redis-node-0 ... redis-node-<replicas-1>.
    pods = [f"redis-node-{i}" for i in range(plain(one(rendering, STATEFULSET))["spec"]["replicas"])]
    assert all(f"{p}.conf" in cm["data"] for p in pods)


@pytest.mark.parametrize("tier", TIER_NAMES)
def test_the_password_travels_only_in_the_secret(tier: str) -> None:
    _, rendering, _ = rendered(tier)
    secret = one(rendering, SECRET)
    assert plain(secret)["metadata"]["name"] == "redis-auth"
    assert isinstance(secret.inputs["stringData"], Secret)
    # The administrator's password and the applications' ACL user's, which only the nodes read (to define it).
    assert plain(secret)["stringData"] == {"password": PASSWORD, "app-password": APP_PASSWORD}
    for r in objects(rendering):
        leaks = [path for path, value in walk_plain(r.inputs) if isinstance(value, str) and "mocksecret" in value]
        assert leaks == [], r.name
    workloads = [one(rendering, STATEFULSET), *rendering.of_type(JOB)]
    for w in workloads:
        (container,) = pod_spec(w)["containers"]
        for env in container["env"]:
            assert "value" not in env
            ref = env["valueFrom"].get("secretKeyRef")
            if ref is not None:
                key = "app-password" if env["name"] == "REDIS_APP_PASSWORD" else "password"
                assert ref == {"name": "redis-auth", "key": key}
    (node,) = pod_spec(one(rendering, STATEFULSET))["containers"]
    assert "REDIS_APP_PASSWORD" in {e["name"] for e in node["env"]}
    for job in rendering.of_type(JOB):
        (container,) = pod_spec(job)["containers"]
        assert "REDIS_APP_PASSWORD" not in {e["name"] for e in container["env"]}, "the creation step is the admin"


@pytest.mark.parametrize("tier", TIER_NAMES)
def test_pods_run_as_the_image_user_with_nothing_extra(tier: str) -> None:
    _, rendering, _ = rendered(tier)
    for w in [one(rendering, STATEFULSET), *rendering.of_type(JOB)]:
        pod = pod_spec(w)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (999, 1000)
        assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
        (container,) = pod["containers"]
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["readOnlyRootFilesystem"] is True
    assert pod_spec(one(rendering, STATEFULSET))["securityContext"]["fsGroup"] == 1000


@pytest.mark.parametrize("tier", TIER_NAMES)
def test_probes_use_the_probe_commands(tier: str) -> None:
    spec, rendering, _ = rendered(tier)
    (container,) = pod_spec(one(rendering, STATEFULSET))["containers"]
    ready, alive = probe_commands(spec.redis)
    assert container["readinessProbe"]["exec"]["command"] == ["/bin/sh", "-c", ready]
    assert container["livenessProbe"]["exec"]["command"] == ["/bin/sh", "-c", alive]
    assert container["startupProbe"]["exec"]["command"] == ["/bin/sh", "-c", alive]


def test_the_statefulset_starts_its_nodes_together_and_keeps_their_claims() -> None:
    _, rendering, _ = rendered("large")
    sts = plain(one(rendering, STATEFULSET))["spec"]
    assert sts["podManagementPolicy"] == "Parallel"
    assert sts["updateStrategy"] == {"type": "RollingUpdate"}
    assert sts["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}


# ---- change and deletion ------------------------------------------------------------------------------

def _without_storage(claims: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = unwrap(claims)
    for claim in out:
        del claim["spec"]["resources"]["requests"]["storage"]
    result: list[dict[str, Any]] = out
    return result


@pytest.mark.parametrize(("before", "after"), [("small", "medium"), ("medium", "large"), ("large", "medium")])
def test_a_tier_change_replaces_no_stateful_object(before: str, after: str) -> None:
    _, old, _ = rendered(before)
    _, new, _ = rendered(after)
    old_sts, new_sts = one(old, STATEFULSET), one(new, STATEFULSET)
    assert (old_sts.urn, plain(old_sts)["metadata"]["name"], plain(old_sts)["metadata"]["namespace"]) == \
        (new_sts.urn, plain(new_sts)["metadata"]["name"], plain(new_sts)["metadata"]["namespace"])
    changed = [f for f in STATEFULSET_FORCE_NEW if plain(old_sts)["spec"].get(f) != plain(new_sts)["spec"].get(f)]
    # Only the claims' size differs, and the engine is told to leave the claims as they were created.
    assert changed in ([], ["volumeClaimTemplates"])
    assert "spec.volumeClaimTemplates" in new_sts.ignore_changes
    assert _without_storage(plain(old_sts)["spec"]["volumeClaimTemplates"]) == \
        _without_storage(plain(new_sts)["spec"]["volumeClaimTemplates"])
    assert plain(old_sts)["spec"]["replicas"] != plain(new_sts)["spec"]["replicas"]
    # The objects the pods find by name keep their names.
    for type_ in (SECRET, SERVICE):
        assert plain(one(old, type_))["metadata"]["name"] == plain(one(new, type_))["metadata"]["name"]
    assert plain(one(old, SERVICE))["spec"]["clusterIP"] == plain(one(new, SERVICE))["spec"]["clusterIP"]


@pytest.mark.parametrize("protect", [True, False])
def test_the_statefulset_is_retained_and_protected_as_the_stack_says(protect: bool) -> None:
    _, rendering, _ = rendered("large", protect)
    sts = one(rendering, STATEFULSET)
    assert sts.retain_on_delete is True
    assert sts.protect is protect
    namespace = one(rendering, NAMESPACE)
    for r in objects(rendering):
        assert namespace.urn in r.depends_on
        if r is not sts:
            assert not r.protect and not r.retain_on_delete, f"{r.type} {r.name} holds no data"


def test_rendering_twice_gives_identical_inputs() -> None:
    spec = spec_for("prod", tier="large")
    first, _ = render(spec)
    second, _ = render(spec)
    # Registration order may vary (outputs resolve concurrently); what is registered may not.
    assert {(r.type, r.name): r.inputs for r in objects(first)} == {(r.type, r.name): r.inputs for r in objects(second)}
    assert len(objects(first)) == len({(r.type, r.name) for r in objects(first)})


# ---- the creation Job ---------------------------------------------------------------------------------

@pytest.mark.parametrize("tier", ["medium", "large"])
def test_the_job_runs_the_creation_script_once_the_nodes_are_up(tier: str) -> None:
    _, rendering, _ = rendered(tier)
    job = one(rendering, JOB)
    manifest = plain(job)
    assert manifest["metadata"]["name"] == "redis-cluster-create"
    assert manifest["metadata"]["annotations"]["pulumi.com/replaceUnready"] == "true"
    assert manifest["spec"]["backoffLimit"] == 1
    assert manifest["spec"]["activeDeadlineSeconds"] == 600
    assert "ttlSecondsAfterFinished" not in manifest["spec"], "a deleted Job would be re-created and re-run"
    pod = pod_spec(job)
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"] == ["/bin/sh", CREATE_PATH]
    (mount,) = container["volumeMounts"]
    (volume,) = pod["volumes"]
    assert mount["mountPath"] == CONF_DIR == CREATE_PATH.rsplit("/", 1)[0]
    assert volume["configMap"]["items"] == [{"key": CREATE_KEY, "path": CREATE_KEY}]
    assert volume["configMap"]["name"] == plain(one(rendering, CONFIG_MAP))["metadata"]["name"]
    assert [e["name"] for e in container["env"]] == ["REDISCLI_AUTH"]
    for dependency in (STATEFULSET, CONFIG_MAP, SECRET, SERVICE):
        assert one(rendering, dependency).urn in job.depends_on
    # Its template is immutable and its name fixed: a change replaces it, deleting the old one first.
    assert job.delete_before_replace and job.replace_on_changes == ("spec",)
    assert not job.protect


def test_the_job_runs_again_when_the_nodes_change_and_only_then() -> None:
    def digest(r: Rendering) -> str:
        annotations: dict[str, str] = plain(one(r, JOB))["spec"]["template"]["metadata"]["annotations"]
        return annotations[NODES_ANNOTATION]

    medium, large = rendered("medium")[1], rendered("large")[1]
    again, _ = render(spec_for("prod", tier="large"))
    assert digest(large) == digest(again)
    assert digest(medium) != digest(large)
    bigger, _ = render(spec_for("prod", tier="large", redis__resources__limits__memory_mib=4096))
    assert digest(bigger) != digest(large), "restarted nodes are checked again"


class FailedJob(BanyanMocks):
    """The provider's answer for a Job that failed (as when awaiting is turned off)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        rid, state = super().new_resource(args)
        if args.typ == JOB:
            state["status"] = {"failed": 2, "conditions": [{
                "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit"}]}
        return rid, state


def test_a_failed_job_fails_the_update_and_says_where_its_log_is() -> None:
    with pytest.raises(pulumi.RunError, match=r"BackoffLimitExceeded(.|\n)*kubectl -n banyan logs job/redis-cluster"):
        render(spec_for("prod", tier="large"), FailedJob())


def test_outputs_are_registered() -> None:
    _, rendering, _ = rendered("large")
    (component,) = rendering.of_type(TYPE)
    assert component.outputs["hosts"] == [f"redis-node-{i}.redis-node" for i in range(6)]
    assert component.outputs["port"] == 6379 and component.outputs["mode"] == "cluster"
    assert [c["urn"] for c in waited_on_output(component)] == [one(rendering, STATEFULSET).urn,
                                                                    one(rendering, JOB).urn]
    assert component.outputs["ready"] is True
    for r in objects(rendering):
        assert r.parent == component.urn
