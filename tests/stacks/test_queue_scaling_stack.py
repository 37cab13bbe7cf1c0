"""Scaling on queue depth (services[].queue_scaling) in the rendered prod stack: KEDA's objects validate against
their CRDs, one owner of each Deployment's replicas in every tier, the connection budget (and the policy pack's
reading of it) counts the scaler's maximum, KEDA reads as the monitoring user and reaches RabbitMQ's management port
only, and the whole feature is absent until a service turns it on."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from components import keda
from components.rabbitmq import kubernetes as rabbitmq_k8s
from model.errors import ConfigError
from policy import rules
from testkit import Rendering, render_stack, unwrap
from testkit.component import stack_spec
from testkit.k8s_check import builtin_problems, crd_problems
from tests.helpers import shared_file
from tests.stacks.test_kubernetes_stack import (
    HELM,
    RABBITMQ_OPERATOR,
    connects,
    kind,
    objects,
    pod_label_sets,
    rendered,
)
from tests.unit.test_policy import resource

TIERS = ("small", "medium", "large")
BOTH = {"services[0].queue_scaling.enabled": True, "services[1].queue_scaling.enabled": True,
        "services[1].queue_scaling.queues": ["service.order-service.commands.PlaceOrder",
                                             "service.order-service.commands.CancelOrder"]}
KEDA_GROUP = "keda.sh"
KEDA_OPERATOR = ("keda", {"app": "keda-operator", "app.kubernetes.io/name": "keda-operator",
                          "app.kubernetes.io/instance": "keda"}, None)


@cache
def scaled(tier: str, first_only: bool = False) -> Rendering:
    sets = {"services[0].queue_scaling.enabled": True} if first_only else BOTH
    return render_stack("prod", set={"tier": tier, **sets})


@cache
def elsewhere() -> Rendering:
    """The cluster runs KEDA itself, in another namespace."""
    return render_stack("prod", set={"tier": "medium", **BOTH, "kubernetes.install_keda": False,
                                     "kubernetes.keda_namespace": "autoscaling"})


def by_kind(r: Rendering, kind_: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in kind(r, kind_)}


def test_keda_and_topology_objects_validate_against_their_crds() -> None:
    crds = shared_file("schemas/crds")
    r = scaled("medium")
    custom = [x for x in objects(r) if x.type.split(":")[1].split("/")[0] in (KEDA_GROUP, "rabbitmq.com")]
    kinds = {x.inputs["kind"] for x in custom}
    assert {"ScaledObject", "TriggerAuthentication", "User", "Permission"} <= kinds, kinds
    for x in custom:
        assert crd_problems(x.inputs, crds) == [], x.name
    for x in objects(r):
        if x.inputs.get("kind") in ("Secret", "NetworkPolicy", "Deployment"):
            assert builtin_problems(x.inputs) == [], x.name
    # The check has teeth: a misspelt field and a wrong type are refused.
    so = next(x for x in custom if x.inputs["kind"] == "ScaledObject")
    broken = unwrap(so.inputs)
    broken["spec"]["maxReplicas"] = broken["spec"].pop("maxReplicaCount")
    broken["spec"]["triggers"][0]["metadata"]["value"] = 10
    problems = crd_problems(broken, crds)
    assert any("maxReplicas" in p for p in problems) and any("value" in p for p in problems), problems


@pytest.mark.parametrize("tier", TIERS)
def test_every_deployment_has_exactly_one_owner_of_its_replicas(tier: str) -> None:
    for r, on in ((scaled(tier, first_only=True), {"user-service"}), (rendered(tier), set())):
        spec_ = stack_spec("prod", set={"tier": tier, **({"services[0].queue_scaling.enabled": True} if on else {})})
        hpas = {o["spec"]["scaleTargetRef"]["name"] for o in kind(r, "HorizontalPodAutoscaler")}
        sos = {o["spec"]["scaleTargetRef"]["name"] for o in kind(r, "ScaledObject")}
        assert len(kind(r, "HorizontalPodAutoscaler")) == len(hpas)  # never two HPAs on one Deployment
        for deployment in by_kind(r, "Deployment"):
            if deployment in {w.name for w in spec_.workloads}:
                assert (deployment in hpas) != (deployment in sos), (tier, deployment, hpas, sos)
        assert sos == on
        assert {s.name for s in spec_.queue_scaled} == on
        for so in kind(r, "ScaledObject"):
            # KEDA names its own HPA after the service: the one banyan's was, taken over (transfer annotation).
            assert so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["name"] == so["metadata"]["name"]
            assert so["metadata"]["annotations"] == keda.TRANSFER_HPA


@pytest.mark.parametrize(("tier", "first_only"), [("small", True), ("medium", False), ("large", True)])
def test_the_budget_counts_the_scalers_maximum(tier: str, first_only: bool) -> None:
    r = scaled(tier, first_only)
    sets = {"services[0].queue_scaling.enabled": True} if first_only else BOTH
    spec_ = stack_spec("prod", set={"tier": tier, **sets})
    lines = {ln.client: ln for ln in spec_.budget.lines}
    sos = by_kind(r, "ScaledObject")
    assert set(sos) == {s.name for s in spec_.queue_scaled} and sos
    for name, so in sos.items():
        assert so["spec"]["maxReplicaCount"] == lines[name].max_instances
        assert so["spec"]["minReplicaCount"] <= so["spec"]["fallback"]["replicas"] <= so["spec"]["maxReplicaCount"]
    # The policy pack, from the resources alone, counts the same maximum.
    budget = rules.read_budget([resource(x) for x in r.resources])
    assert {(c.name, c.instances) for c in budget.clients} == {(n, ln.max_instances) for n, ln in lines.items()}
    assert budget.total == spec_.budget.total
    assert rules.check_connection_budget([resource(x) for x in r.resources]).violations == []


def test_a_scaler_maximum_beyond_max_connections_is_refused() -> None:
    sets = {"tier": "medium", **BOTH, "services[0].autoscaling.max_replicas": 60}
    assert stack_spec("prod", set=sets).postgres.max_connections > stack_spec("prod", set={"tier": "medium", **BOTH}) \
        .postgres.max_connections
    with pytest.raises(ConfigError) as caught:
        stack_spec("prod", set={**sets, "postgres.max_connections": 1000})
    (problem,) = [p.render() for p in caught.value.problems]
    assert problem.startswith("banyan:postgres.max_connections: got 1000;") and "user-service 60 x 10" in problem


def test_keda_reads_queue_depths_as_the_monitoring_user_never_the_admin() -> None:
    r = scaled("medium")
    (auth,) = kind(r, "TriggerAuthentication")
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert set(refs) == {"username", "password"} and len({ref["name"] for ref in refs.values()}) == 1
    secret = by_kind(r, "Secret")[refs["username"]["name"]]
    assert secret["stringData"]["username"] == keda.MONITORING_USER
    admin = by_kind(r, "Secret")[rabbitmq_k8s.default_user_secret_name(stack_spec("prod").rabbitmq)]
    assert secret["stringData"]["password"] != admin["stringData"]["password"]
    assert admin["stringData"]["username"] != keda.MONITORING_USER
    users = [u for u in kind(r, "User") if u["spec"]["importCredentialsSecret"]["name"] == secret["metadata"]["name"]]
    (user,) = users
    assert user["spec"]["tags"] == ["monitoring"]
    (perm,) = [p for p in kind(r, "Permission") if p["spec"]["userReference"]["name"] == user["metadata"]["name"]]
    assert perm["spec"]["permissions"] == {"configure": "^$", "write": "^$", "read": "^$"}
    for so in kind(r, "ScaledObject"):
        trigger = so["spec"]["triggers"][0]
        meta = trigger["metadata"]
        assert trigger["type"] == "rabbitmq" and trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        assert meta["protocol"] == "http" and meta["excludeUnacknowledged"] == "false" and "@" not in meta["host"]
        assert [t["type"] for t in so["spec"]["triggers"][1:]] == ["cpu", "memory"]
        assert so["spec"]["fallback"]["behavior"] == "currentReplicasIfHigher"
    sos = by_kind(r, "ScaledObject")
    assert sos["user-service"]["spec"]["triggers"][0]["metadata"]["queueName"] == r"^service\.user-service\.commands\."
    order = sos["order-service"]["spec"]["triggers"][0]["metadata"]
    assert (order["useRegex"], order["operation"]) == ("true", "sum")
    assert order["queueName"] == r"^(service\.order\-service\.commands\.PlaceOrder|" \
        r"service\.order\-service\.commands\.CancelOrder)$"


def test_keda_reaches_rabbitmqs_management_port_and_nothing_else() -> None:
    on, off = scaled("medium"), rendered("medium")
    mq = ("banyan", pod_label_sets(on)["RabbitmqCluster/rabbitmq"], None)
    spec_ = stack_spec("prod")
    mgmt = spec_.rabbitmq.management_port
    assert connects(on, KEDA_OPERATOR, mq, mgmt)
    assert not connects(off, KEDA_OPERATOR, mq, mgmt)
    assert connects(off, RABBITMQ_OPERATOR, mq, mgmt) and connects(on, RABBITMQ_OPERATOR, mq, mgmt)
    other_in_keda = ("keda", {"app.kubernetes.io/name": "keda-admission-webhooks"}, None)
    assert not connects(on, other_in_keda, mq, mgmt)
    # Nginx is the platform's public entry (anyone reaches its port); nothing else of the namespace.
    pods = {owner: labels for owner, labels in pod_label_sets(on).items() if owner != "Deployment/nginx"}
    for owner, labels in pods.items():
        for port in (spec_.rabbitmq.port, rabbitmq_k8s.PROMETHEUS_PORT, rabbitmq_k8s.EPMD_PORT,
                     rabbitmq_k8s.DISTRIBUTION_PORT, spec_.postgres.port, spec_.redis.port, 3000, 3003, 8080):
            assert not connects(on, KEDA_OPERATOR, ("banyan", labels, None), port), (owner, port)
    moved = elsewhere()
    assert connects(moved, ("autoscaling", KEDA_OPERATOR[1], None), mq, mgmt)
    assert not connects(moved, KEDA_OPERATOR, mq, mgmt)


def test_keda_is_installed_pinned_unless_the_cluster_runs_it() -> None:
    r = scaled("medium")
    (release,) = [unwrap(x.inputs) for x in r.of_type(HELM) if unwrap(x.inputs)["chart"] == keda.CHART]
    assert (release["version"], release["repositoryOpts"]["repo"]) == (keda.CHART_VERSION, keda.CHART_REPO)
    assert release["namespace"] == "keda"
    patched = [unwrap(p.inputs)["metadata"]["name"] for p in r.of_type("kubernetes:core/v1:NamespacePatch")]
    assert "keda" in patched
    without = elsewhere()
    assert [x for x in without.of_type(HELM) if unwrap(x.inputs)["chart"] == keda.CHART] == []
    assert kind(without, "ScaledObject") and kind(without, "TriggerAuthentication")


def test_nothing_of_keda_until_a_service_turns_it_on() -> None:
    for tier in TIERS:
        r = rendered(tier)
        assert [x.name for x in r.resources if KEDA_GROUP in x.type or "keda" in x.name] == []
        assert len(kind(r, "HorizontalPodAutoscaler")) == 1 + len(stack_spec("prod").services)


def test_the_plan_shows_the_scaler_in_the_budget_and_advises_docker() -> None:
    from tooling.plan import build_plan, plan_data, render_text

    prod = build_plan("prod", {"services[0].queue_scaling.enabled": True})
    text = render_text(prod)
    budget = text.split("== connection budget", 1)[1].split("==", 1)[0]
    assert "user-service 40 x 10" in budget  # the scaler's maximum, counted as the HPA's was
    queue = text.split("== queue depth", 1)[1].split("\n==", 1)[0]
    assert "user-service: KEDA ScaledObject on ^service\\.user-service\\.commands\\." in queue
    assert "20-40 replicas (the connection budget counts 40 x 10)" in queue
    assert "order-service: HorizontalPodAutoscaler on CPU and memory only" in queue
    assert plan_data(prod)["queue_scaling"]["order-service"] is None
    dev = render_text(build_plan("dev", {"services[1].prefetch": 20}))
    advice = dev.split("== queue depth", 1)[1].split("\n==", 1)[0]
    # 3 instances x prefetch 10 in flight + the guide's 100 waiting, 10 per instance: 13 instances; prefetch 20:
    # (60 + 100) / 20 = 8.
    assert "scale user-service to 13 instances (set banyan:services[0].instances: 13" in advice
    assert "scale order-service to 8 instances (set banyan:services[1].instances: 8" in advice
    assert "max_connections" in advice


def test_keda_objects_are_in_the_name_inventory() -> None:
    """model/checks.py refuses a service name that would clash with these objects: it must list them as rendered."""
    from model import checks

    spec_ = stack_spec("prod", set={"tier": "medium", **BOTH})
    inventory = {(o.kind, o.name) for o in checks.kubernetes_objects(spec_)}
    mine = {(o["kind"], o["metadata"]["name"]) for o in (unwrap(x.inputs) for x in objects(scaled("medium")))
            if o.get("kind") in ("ScaledObject", "TriggerAuthentication")
            or keda.MONITORING_USER in str(o.get("metadata", {}).get("name"))}
    assert len(mine) == 2 + 1 + 3, mine  # two ScaledObjects, the TriggerAuthentication, User, Permission, Secret
    assert mine <= inventory, sorted(mine - inventory)
