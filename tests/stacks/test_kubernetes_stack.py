"""The whole prod stack (Kubernetes target) rendered from Pulumi.prod.yaml under mocks, for every tier."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from model.tiers import NGINX_UNPRIVILEGED_PORT, TIERS
from testkit import RecordedResource, Rendering, mock_secret_value, render_stack, unwrap, walk_plain
from testkit.k8s_check import KUBERNETES_VERSION, builtin_problems, crd_problems
from tests.helpers import shared_file

TIERS_ = ("small", "medium", "large")
CUSTOM_GROUPS = ("postgresql.cnpg.io", "rabbitmq.com")
HELM = "kubernetes:helm.sh/v3:Release"
PROVIDER = "pulumi:providers:kubernetes"


@cache
def rendered(tier: str) -> Rendering:
    return render_stack("prod", set={"tier": tier})


def objects(r: Rendering) -> list[RecordedResource]:
    """Every Kubernetes object the stack applies (not Helm releases or the provider)."""
    return [x for x in r.resources if x.type.startswith("kubernetes:") and x.type != HELM]


def is_custom(x: RecordedResource) -> bool:
    return x.type.split(":")[1].split("/")[0] in CUSTOM_GROUPS


def kind(r: Rendering, kind_: str) -> list[dict[str, Any]]:
    return [unwrap(x.inputs) for x in objects(r) if x.inputs.get("kind") == kind_]


def named(r: Rendering, kind_: str, name: str) -> dict[str, Any]:
    found = [o for o in kind(r, kind_) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind_} named {name}"
    return found[0]


def pod_label_sets(r: Rendering) -> dict[str, dict[str, str]]:
    """The labels of every pod the stack makes run, by owner: templates, and what operators are told."""
    pods: dict[str, dict[str, str]] = {}
    for k in ("Deployment", "StatefulSet"):
        for o in kind(r, k):
            pods[f"{k}/{o['metadata']['name']}"] = o["spec"]["template"]["metadata"]["labels"]
    for o in kind(r, "Job"):
        pods[f"Job/{o['metadata']['name']}"] = o["spec"]["template"]["metadata"]["labels"]
    # Operator-made pods: what we ask for, plus the labels CloudNativePG always sets itself.
    for o in kind(r, "Cluster"):
        pods[f"Cluster/{o['metadata']['name']}"] = {**o["spec"]["inheritedMetadata"]["labels"],
                                                    "cnpg.io/cluster": o["metadata"]["name"],
                                                    "cnpg.io/podRole": "instance"}
    for o in kind(r, "Pooler"):
        pods[f"Pooler/{o['metadata']['name']}"] = {**o["spec"]["template"]["metadata"]["labels"],
                                                   "cnpg.io/poolerName": o["metadata"]["name"],
                                                   "cnpg.io/podRole": "pooler"}
    for o in kind(r, "RabbitmqCluster"):
        override = o["spec"]["override"]["statefulSet"]["spec"]["template"]["metadata"]["labels"]
        pods[f"RabbitmqCluster/{o['metadata']['name']}"] = override
    return pods


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("tier", TIERS_)
def test_every_builtin_object_validates_strictly(tier: str) -> None:
    builtins = [x for x in objects(rendered(tier)) if not is_custom(x)]
    assert len(builtins) > 20
    problems = {f"{x.inputs['kind']} {x.name}": builtin_problems(x.inputs) for x in builtins}
    assert {k: v for k, v in problems.items() if v} == {}, f"Kubernetes {KUBERNETES_VERSION}"


@pytest.mark.parametrize("tier", TIERS_)
def test_every_operator_custom_resource_validates_against_its_crd(tier: str) -> None:
    crd_dir = shared_file("schemas", "crds")
    customs = [x for x in objects(rendered(tier)) if is_custom(x)]
    assert {x.inputs["kind"] for x in customs} >= {"Cluster", "RabbitmqCluster"}
    problems = {f"{x.inputs['kind']} {x.name}": crd_problems(x.inputs, crd_dir) for x in customs}
    assert {k: v for k, v in problems.items() if v} == {}


def test_the_validators_reject_a_broken_object() -> None:
    r = rendered("medium")
    deployment = next(x for x in objects(r) if x.inputs.get("kind") == "Deployment")
    broken = {**deployment.inputs, "spec": {**deployment.inputs["spec"], "replica": 3}}
    assert builtin_problems(broken)
    cluster = next(x for x in objects(r) if x.inputs.get("kind") == "Cluster")
    bad_cr = {**cluster.inputs, "spec": {**cluster.inputs["spec"], "instance": 3}}
    assert crd_problems(bad_cr, shared_file("schemas", "crds"))


@pytest.mark.parametrize("tier", TIERS_)
def test_counts_autoscalers_and_budgets_follow_the_tier(tier: str) -> None:
    r, preset = rendered(tier), TIERS[tier]
    hpas = {o["metadata"]["name"]: o["spec"] for o in kind(r, "HorizontalPodAutoscaler")}
    assert (hpas["api-gateway"]["minReplicas"], hpas["api-gateway"]["maxReplicas"]) == (
        preset.gateway_instances, preset.gateway_max)
    for svc in ("user-service", "order-service"):
        assert (hpas[svc]["minReplicas"], hpas[svc]["maxReplicas"]) == (preset.service_instances, preset.service_max)
    for spec in hpas.values():
        targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in spec["metrics"]}
        assert targets == {"cpu": 70, "memory": 80}
    for name in hpas:
        deployment = named(r, "Deployment", name)
        assert "replicas" not in deployment["spec"], f"{name}: replicas must be left to the autoscaler"
        limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
        res = preset.resources["gateway" if name == "api-gateway" else "service"]
        assert limits["limits"] == {"cpu": f"{res.limits.cpu_millis}m", "memory": f"{res.limits.memory_mib}Mi"}
        assert limits["requests"] == {"cpu": f"{res.requests.cpu_millis}m",
                                      "memory": f"{res.requests.memory_mib}Mi"}
    pdbs = {o["metadata"]["name"]: o["spec"] for o in kind(r, "PodDisruptionBudget")}
    for name, spec in hpas.items():
        assert (name in pdbs) == (spec["minReplicas"] > 1)
    for pdb in pdbs.values():
        assert pdb.get("maxUnavailable") == 1 or pdb.get("unhealthyPodEvictionPolicy") == "AlwaysAllow"
        assert "minAvailable" not in pdb or pdb["minAvailable"] < 1
    (cluster,) = kind(r, "Cluster")
    assert cluster["spec"]["instances"] == 1 + preset.postgres_replicas
    (mq,) = kind(r, "RabbitmqCluster")
    assert mq["spec"]["replicas"] == preset.rabbitmq_nodes
    redis = [o for o in kind(r, "StatefulSet") if o["metadata"]["name"].startswith("redis")]
    assert [o["spec"]["replicas"] for o in redis] == [preset.redis_nodes]


@pytest.mark.parametrize("tier", TIERS_)
def test_selectors_match_pod_labels_and_every_service_selects_pods(tier: str) -> None:
    r = rendered(tier)
    for k in ("Deployment", "StatefulSet"):
        for o in kind(r, k):
            assert selects(o["spec"]["selector"]["matchLabels"], o["spec"]["template"]["metadata"]["labels"])
    pods = pod_label_sets(r)
    for svc in kind(r, "Service"):
        selector = svc["spec"].get("selector") or {}
        owners = [owner for owner, labels in pods.items() if selects(selector, labels)]
        assert owners, f"Service {svc['metadata']['name']} selects no pods ({selector})"


def reachable(r: Rendering, source: dict[str, str] | None, source_ns: str, dest: dict[str, str], port: int) -> bool:
    """Whether the stack's NetworkPolicies admit a connection (ingress only, as they are written)."""
    policies = kind(r, "NetworkPolicy")
    applying = [p for p in policies if all(dest.get(k) == v for k, v in
                                            p["spec"]["podSelector"].get("matchLabels", {}).items())]
    if not applying:
        return True
    for policy in applying:
        for rule in policy["spec"].get("ingress") or []:
            if rule.get("ports") and not any(p["port"] <= port <= p.get("endPort", p["port"]) for p in rule["ports"]):
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                if "namespaceSelector" in peer:
                    if peer["namespaceSelector"]["matchLabels"].get("kubernetes.io/metadata.name") == source_ns:
                        return True
                elif source is not None and source_ns == "banyan" and selects(
                        peer["podSelector"]["matchLabels"], source):
                    return True
    return False


@pytest.mark.parametrize("tier", TIERS_)
def test_network_policies_admit_exactly_the_platform_paths(tier: str) -> None:
    r = rendered(tier)
    pods = pod_label_sets(r)

    def labels(owner: str) -> dict[str, str]:
        return pods[owner]

    gw, usr = labels("Deployment/api-gateway"), labels("Deployment/user-service")
    nginx, pg = labels("Deployment/nginx"), labels("Cluster/postgres")
    pooler = labels("Pooler/postgres-pooler")
    mq, rd = labels("RabbitmqCluster/rabbitmq"), labels("StatefulSet/redis-node")
    outside = None
    table = [
        # (source, source namespace, destination, port, admitted)
        # Nginx's pods listen on an unprivileged port (they run as non-root); the Service maps the public one.
        (outside, "internet", nginx, NGINX_UNPRIVILEGED_PORT, True),
        (outside, "internet", nginx, 80, False),
        (outside, "internet", gw, 3003, False),
        (outside, "internet", pg, 5432, False),
        (outside, "internet", mq, 5672, False),
        (outside, "internet", rd, 6379, False),
        (nginx, "banyan", gw, 3003, True),
        (nginx, "banyan", pg, 5432, False),
        (nginx, "banyan", rd, 6379, False),
        (nginx, "banyan", mq, 5672, False),
        (gw, "banyan", usr, 3000, True),
        (gw, "banyan", mq, 5672, True),
        (gw, "banyan", rd, 6379, True),
        (gw, "banyan", pg, 5432, False),  # the gateway is no database client by default
        (usr, "banyan", pg, 5432, True),
        (usr, "banyan", pooler, 5432, True),
        (nginx, "banyan", pooler, 5432, False),
        (pooler, "banyan", pg, 5432, True),
        (pooler, "banyan", rd, 6379, False),
        (usr, "banyan", mq, 5672, True),
        (usr, "banyan", rd, 6379, True),
        (usr, "banyan", gw, 3003, False),
        (usr, "banyan", rd, 16379, False),
        (pg, "banyan", pg, 5432, True),
        (pg, "banyan", rd, 6379, False),
        (rd, "banyan", rd, 16379, True),
        (mq, "banyan", mq, 25672, True),
        (mq, "banyan", mq, 35680, True),
        (usr, "banyan", mq, 25672, False),
        (outside, "cnpg-system", pg, 8000, True),
        (outside, "rabbitmq-system", mq, 15672, True),
        (outside, "other-namespace", pg, 5432, False),
    ]
    wrong = [(src, ns, dst.get("app.kubernetes.io/name"), port, want) for src, ns, dst, port, want in table
             if reachable(r, src, ns, dst, port) != want]
    assert wrong == []


@pytest.mark.parametrize("tier", TIERS_)
def test_no_secret_value_in_any_plain_input(tier: str) -> None:
    r = rendered(tier)
    secrets = [mock_secret_value(x.name) for x in r.resources if x.type.startswith("random:")]
    assert len(secrets) >= 5
    leaks = [f"{x.type} {x.name}: {path}" for x in r.resources for path, v in walk_plain(x.inputs)
             if isinstance(v, str) and any(s in v for s in secrets)]
    assert leaks == []
    env_secrets = [o for o in kind(r, "Secret") if o["metadata"]["name"] == "user-service-env"]
    assert env_secrets and any(s in env_secrets[0]["stringData"]["DATABASE_URL"] for s in secrets)


def _fingerprint(r: Rendering) -> list[tuple[Any, ...]]:
    return sorted((x.type, x.name, x.parent or "", repr(unwrap(x.inputs)), x.protect, x.retain_on_delete)
                  for x in r.resources)


def test_rendering_twice_gives_identical_inputs() -> None:
    assert _fingerprint(render_stack("prod", set={"tier": "medium"})) == _fingerprint(
        render_stack("prod", set={"tier": "medium"}))


STATEFUL_KINDS = ("Cluster", "RabbitmqCluster", "StatefulSet", "Namespace", "PersistentVolumeClaim")


def immutable_fields(obj: dict[str, Any], ignored: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the API server (or the operator) will not change in place: a change means replacement. Fields
    the resource's ignore_changes lists keep their created value (the engine diffs them as unchanged)."""
    spec = obj.get("spec", {})
    if obj["kind"] == "StatefulSet":
        return {k: spec.get(k) for k in ("serviceName", "selector", "volumeClaimTemplates", "podManagementPolicy")
                if f"spec.{k}" not in ignored}
    if obj["kind"] == "Cluster":
        return {"storageClass": spec.get("storage", {}).get("storageClass")}
    if obj["kind"] == "RabbitmqCluster":
        return {"storageClassName": (spec.get("persistence") or {}).get("storageClassName")}
    return {}


@pytest.mark.parametrize(("before", "after"), [("small", "medium"), ("medium", "large"), ("large", "small")])
def test_changing_the_tier_replaces_no_stateful_resource(before: str, after: str) -> None:
    def stateful(r: Rendering) -> dict[tuple[str, str], RecordedResource]:
        return {(x.type, x.name): x for x in objects(r) if x.inputs.get("kind") in STATEFUL_KINDS}

    sa, sb = stateful(rendered(before)), stateful(rendered(after))
    assert sa.keys() == sb.keys(), "a tier change must not add or remove a stateful object"
    for key, x in sa.items():
        ix, iy = unwrap(x.inputs), unwrap(sb[key].inputs)
        assert x.retain_on_delete and sb[key].retain_on_delete, key
        assert ix["metadata"]["name"] == iy["metadata"]["name"], key
        assert x.ignore_changes == sb[key].ignore_changes, key
        assert immutable_fields(ix, x.ignore_changes) == immutable_fields(iy, x.ignore_changes), key


def test_prod_protects_stateful_resources_and_the_namespace() -> None:
    r = rendered("large")
    stateful = [x for x in objects(r) if x.inputs.get("kind") in STATEFUL_KINDS]
    assert stateful
    assert all(x.protect and x.retain_on_delete for x in stateful), [x.name for x in stateful if not x.protect]


def test_operators_installed_by_default_and_optional() -> None:
    releases = rendered("medium").of_type(HELM)
    assert len(releases) == 2
    for rel in releases:
        assert rel.plain_inputs.get("version"), f"{rel.name}: chart version must be pinned"
    without = render_stack("prod", set={"tier": "medium", "kubernetes.install_operators": False})
    assert without.of_type(HELM) == []


def test_objects_use_the_configured_provider_and_namespace() -> None:
    r = rendered("small")
    (provider,) = r.of_type(PROVIDER)
    for x in objects(r):
        assert x.provider and x.provider.startswith(provider.urn), f"{x.type} {x.name} uses another provider"
        meta = x.inputs.get("metadata", {})
        if x.inputs.get("kind") != "Namespace":
            assert meta.get("namespace") == "banyan", f"{x.type} {x.name}"
