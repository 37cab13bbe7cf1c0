"""PostgresCluster on the Kubernetes target (CloudNativePG), rendered under Pulumi's mocks for every tier."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from components.postgres import OPERATOR_NAMESPACE, PostgresCluster
from components.postgres import kubernetes as pgk
from components.postgres.config import slot_wal_cap_mib
from model import pins
from model.spec import PlatformSpec
from model.tiers import TIERS
from testkit import RecordedResource, Rendering, Secret, unwrap, walk_plain
from testkit.component import render_component
from testkit.k8s_check import builtin_problems, crd_problems
from testkit.netns import traversable
from tests.helpers import shared_file, spec_for, waited_on_output

NAME = "platform-postgres"
NAMESPACE_PATCH = "kubernetes:core/v1:NamespacePatch"
TYPE = "banyan:index:PostgresCluster"
CLUSTER = "kubernetes:postgresql.cnpg.io/v1:Cluster"
POOLER = "kubernetes:postgresql.cnpg.io/v1:Pooler"
SECRET = "kubernetes:core/v1:Secret"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
RELEASE = "kubernetes:helm.sh/v3:Release"
OBJECT_STORE = "kubernetes:barmancloud.cnpg.io/v1:ObjectStore"
SCHEDULED_BACKUP = "kubernetes:postgresql.cnpg.io/v1:ScheduledBackup"
TIERS_ = ("small", "medium", "large")

# CloudNativePG's FixedConfigurationParameters (pkg/postgres/configuration.go): its webhook rejects a
# Cluster that sets any of them.
OPERATOR_OWNED_PARAMETERS = frozenset({
    "allow_system_table_mods", "archive_cleanup_command", "archive_command", "archive_mode", "bonjour",
    "bonjour_name", "cluster_name", "config_file", "data_directory", "data_sync_retry", "event_source",
    "external_pid_file", "hba_file", "hot_standby", "ident_file", "jit_provider", "listen_addresses",
    "log_destination", "log_directory", "log_file_mode", "log_filename", "log_rotation_age",
    "log_rotation_size", "log_truncate_on_rotation", "logging_collector", "port", "primary_conninfo",
    "primary_slot_name", "promote_trigger_file", "recovery_end_command", "recovery_min_apply_delay",
    "recovery_target", "recovery_target_action", "recovery_target_inclusive", "recovery_target_lsn",
    "recovery_target_name", "recovery_target_time", "recovery_target_timeline", "recovery_target_xid",
    "restart_after_crash", "restore_command", "shared_preload_libraries", "ssl", "ssl_ca_file",
    "ssl_cert_file", "ssl_crl_file", "ssl_dh_params_file", "ssl_ecdh_curve", "ssl_key_file",
    "ssl_passphrase_command", "ssl_passphrase_command_supports_reload", "ssl_prefer_server_ciphers",
    "stats_temp_directory", "synchronized_standby_slots", "synchronous_standby_names", "syslog_facility",
    "syslog_ident", "syslog_sequence_numbers", "syslog_split_messages", "temp_tablespaces",
    "unix_socket_directories", "unix_socket_group", "unix_socket_permissions", "wal_level", "wal_log_hints",
})
# The Pooler webhook's allow-list (AllowedPgbouncerGenericConfigurationParameters), the part we use.
POOLER_PARAMETERS_ALLOWED = frozenset({
    "default_pool_size", "max_client_conn", "max_db_connections", "max_prepared_statements",
    "max_user_connections", "reserve_pool_size",
})
# Cluster fields the operator applies in place (scale, resize, reload or rolling restart): a tier change
# may touch these and nothing else.
# The wait for a first seed grows with the instances; pulumi-kubernetes reads it, the operator never does.
READY_TIMEOUT = "metadata.annotations.pulumi.com/timeoutSeconds"
IN_PLACE_FIELDS = ("spec.instances", "spec.resources.", "spec.storage.size", "spec.postgresql.parameters.",
                   READY_TIMEOUT)


def render(spec: PlatformSpec) -> Rendering:
    rendering, _ = render_component(spec, lambda s: PostgresCluster(
        NAME, spec.postgres, passwords=s.secrets.postgres, target=s.target, opts=s.child))
    return rendering


@cache
def tier_spec(tier: str) -> PlatformSpec:
    return spec_for("prod", tier=tier)


@cache
def rendered(tier: str) -> Rendering:
    return render(tier_spec(tier))


def only(r: Rendering, type_: str) -> RecordedResource:
    (found,) = r.of_type(type_)
    return found


def operator(r: Rendering) -> RecordedResource:
    """The operator's release (beside it, with backups on, the Barman Cloud plugin's)."""
    return r.get(RELEASE, f"{NAME}-operator")


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(leaves(v, f"{path}.{k}" if path else k))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(leaves(v, f"{path}[{i}]"))
        return out
    return {path: value}


@pytest.mark.parametrize("tier", TIERS_)
def test_custom_resources_validate_against_the_crds(tier: str) -> None:
    crd_dir = shared_file("schemas", "crds")
    r = rendered(tier)
    customs = [*r.of_type(CLUSTER), *r.of_type(POOLER)]
    assert customs
    assert {x.name: crd_problems(x.inputs, crd_dir) for x in customs} == {x.name: [] for x in customs}


@pytest.mark.parametrize("tier", TIERS_)
def test_builtin_objects_validate_strictly(tier: str) -> None:
    r = rendered(tier)
    builtins = [x for x in r.resources if x.type in (SECRET, PDB) and x.parent == only(r, TYPE).urn]
    assert builtins
    assert {x.name: builtin_problems(x.inputs) for x in builtins} == {x.name: [] for x in builtins}


def test_the_crd_check_can_fail() -> None:
    cluster = only(rendered("medium"), CLUSTER)
    broken = {**cluster.inputs, "spec": {**cluster.inputs["spec"], "instances": "3", "replicas": 2}}
    problems = crd_problems(broken, shared_file("schemas", "crds"))
    assert any("instances" in p for p in problems) and any("replicas" in p for p in problems)


@pytest.mark.parametrize("tier", TIERS_)
def test_instances_follow_the_tier(tier: str) -> None:
    spec = only(rendered(tier), CLUSTER).plain_inputs["spec"]
    assert spec["instances"] == 1 + TIERS[tier].postgres_replicas == 1 + tier_spec(tier).postgres.replicas
    pg = tier_spec(tier).postgres
    assert spec["storage"]["size"] == f"{pg.storage_gib}Gi"
    res = pg.resources
    assert spec["resources"] == {
        "limits": {"cpu": f"{res.limits.cpu_millis}m", "memory": f"{res.limits.memory_mib}Mi"},
        "requests": {"cpu": f"{res.requests.cpu_millis}m", "memory": f"{res.requests.memory_mib}Mi"},
    }


def test_more_replicas_mean_more_instances() -> None:
    spec = spec_for("prod", tier="medium", postgres__replicas=5)
    assert only(render(spec), CLUSTER).plain_inputs["spec"]["instances"] == 6


@pytest.mark.parametrize("tier", TIERS_)
def test_parameters_follow_the_spec(tier: str) -> None:
    pg = tier_spec(tier).postgres
    params = only(rendered(tier), CLUSTER).plain_inputs["spec"]["postgresql"]["parameters"]
    assert {k: params[k] for k in ("max_connections", "shared_buffers", "effective_cache_size", "work_mem",
                                   "maintenance_work_mem", "max_wal_senders", "max_replication_slots")} == {
        "max_connections": str(pg.max_connections),
        "shared_buffers": f"{pg.shared_buffers_mib}MB",
        "effective_cache_size": f"{pg.effective_cache_size_mib}MB",
        "work_mem": f"{pg.work_mem_kib}kB",
        "maintenance_work_mem": f"{pg.maintenance_work_mem_mib}MB",
        "max_wal_senders": str(pg.max_wal_senders),
        "max_replication_slots": str(pg.max_replication_slots),
    }
    assert params["max_slot_wal_keep_size"] == f"{slot_wal_cap_mib(pg)}MB"
    assert all(isinstance(v, str) for v in params.values()), "CloudNativePG takes strings only"
    assert OPERATOR_OWNED_PARAMETERS.isdisjoint(params)
    # The operator's webhook: the memory request must hold shared_buffers.
    assert pg.shared_buffers_mib <= pg.resources.requests.memory_mib
    # A standby for each replica on every instance.
    assert pg.max_replication_slots >= pg.replicas


@pytest.mark.parametrize("tier", TIERS_)
def test_bootstrap_image_storage_and_access(tier: str) -> None:
    spec_ = tier_spec(tier)
    spec = only(rendered(tier), CLUSTER).plain_inputs["spec"]
    assert spec["bootstrap"]["initdb"] | {"secret": None} == {
        "database": spec_.postgres.database, "owner": spec_.postgres.user, "secret": None,
        "dataChecksums": True, "encoding": "UTF8"}
    assert spec["bootstrap"]["initdb"]["secret"] == {"name": "postgres-app-credentials"}
    assert spec["enableSuperuserAccess"] is False
    assert "superuserSecret" not in spec
    # The pinned server's operand: CloudNativePG's catalog build, by digest (model/pins.py).
    assert spec["imageName"] == pins.CNPG_OPERANDS[(16, 15)].ref
    assert spec["imageName"].startswith("ghcr.io/cloudnative-pg/postgresql:16.15-") and "@sha256:" in spec["imageName"]
    assert "storageClass" not in spec["storage"]
    assert spec["enablePDB"] is True
    assert spec["affinity"]["enablePodAntiAffinity"] is True
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"] == {"cnpg.io/cluster": "postgres", "cnpg.io/podRole": "instance"}
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"


def test_storage_class_is_passed_on() -> None:
    spec = spec_for("prod", tier="small", kubernetes__storage_class="fast-ssd")
    assert only(render(spec), CLUSTER).plain_inputs["spec"]["storage"]["storageClass"] == "fast-ssd"


@pytest.mark.parametrize("tier", TIERS_)
def test_pods_carry_the_selector_labels(tier: str) -> None:
    r, spec = rendered(tier), tier_spec(tier)
    cluster = only(r, CLUSTER).plain_inputs
    selector = {"app.kubernetes.io/name": "postgres", "app.kubernetes.io/instance": spec.stack}
    assert cluster["spec"]["inheritedMetadata"]["labels"].items() >= selector.items()
    assert cluster["metadata"]["name"] == "postgres"
    assert cluster["metadata"]["namespace"] == spec.kubernetes.namespace
    pooler = only(r, POOLER).plain_inputs
    pooler_labels = pooler["spec"]["template"]["metadata"]["labels"]
    assert pooler_labels.items() >= {"app.kubernetes.io/name": "postgres-pooler",
                                     "app.kubernetes.io/instance": spec.stack}.items()
    pdb = only(r, PDB).plain_inputs
    assert pdb["spec"]["selector"]["matchLabels"] == {"cnpg.io/poolerName": "postgres-pooler"}
    assert pdb["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("tier", TIERS_)
def test_pooler_keeps_server_connections_within_the_budget(tier: str) -> None:
    spec = tier_spec(tier)
    pooler = only(rendered(tier), POOLER).plain_inputs["spec"]
    assert (pooler["cluster"], pooler["type"], pooler["instances"]) == ({"name": "postgres"}, "rw",
                                                                        pgk.POOLER_INSTANCES)
    params = {k: int(v) for k, v in pooler["pgbouncer"]["parameters"].items()}
    assert set(params) <= POOLER_PARAMETERS_ALLOWED
    per_instance = params["default_pool_size"] + params["reserve_pool_size"]
    assert params["max_db_connections"] == params["max_user_connections"] == per_instance
    server = pooler["instances"] * per_instance
    # Strictly under 80 % of max_connections, as the guide's budget is checked.
    assert server * 100 < spec.postgres.max_connections * spec.budget.limit_percent
    assert server >= spec.postgres.max_connections * spec.budget.limit_percent // 100 - pooler["instances"]
    # Every client of the budget fits on one pooler while the other is away.
    assert params["max_client_conn"] >= spec.budget.total
    assert pooler["pgbouncer"]["poolMode"] == "transaction"


def test_no_pooler_when_the_clients_fit_the_server() -> None:
    spec = spec_for("prod", tier="small", services__0__autoscaling__max_replicas=5,
                    services__1__database_client=False)
    assert spec.budget.total == 50
    r = render(spec)
    assert r.of_type(POOLER) == [] and r.of_type(PDB) == []
    outputs = only(r, TYPE).outputs
    assert outputs["primary_host"] == "postgres-rw"
    assert len(waited_on_output(only(r, TYPE))) == 1


def test_the_pooler_rule() -> None:
    pg = tier_spec("small").postgres
    budget = tier_spec("small").budget
    assert budget.total == 200
    assert pgk.pooler_sizing(pg, budget) is not None
    lines = tuple(line.model_copy(update={"max_instances": 8}) for line in budget.lines)
    small_budget = budget.model_copy(update={"lines": lines})  # 2 x 8 x 10 = 160 -> needs 201
    assert pgk.pooler_sizing(pg, small_budget) is not None
    lines = tuple(line.model_copy(update={"max_instances": 7}) for line in budget.lines)
    assert pgk.pooler_sizing(pg, budget.model_copy(update={"lines": lines})) is None  # 140 -> 176


@pytest.mark.parametrize("tier", TIERS_)
def test_outputs(tier: str) -> None:
    r, spec = rendered(tier), tier_spec(tier)
    outputs = only(r, TYPE).outputs
    assert outputs["primary_host"] == "postgres-pooler"
    assert outputs["replica_hosts"] == (["postgres-ro"] if spec.postgres.replicas else [])
    assert (outputs["port"], outputs["database"], outputs["user"]) == (5432, "banyan", "banyan")
    assert len(waited_on_output(only(r, TYPE))) == 2


@pytest.mark.parametrize("tier", TIERS_)
def test_the_operator_release_comes_first(tier: str) -> None:
    r = rendered(tier)
    release = operator(r)
    inputs = release.plain_inputs
    assert (inputs["chart"], inputs["version"], inputs["namespace"], inputs["name"]) == (
        "cloudnative-pg", pgk.CHART_VERSION, OPERATOR_NAMESPACE, "cnpg")
    assert inputs["repositoryOpts"] == {"repo": "https://cloudnative-pg.github.io/charts"}
    assert inputs["createNamespace"] is True
    # Uninstalling the chart would take its CRDs and every Cluster along: protected like the Cluster itself.
    assert release.retain_on_delete and release.protect
    secret = only(r, SECRET)
    assert {release.urn, secret.urn} <= set(only(r, CLUSTER).depends_on)
    assert {release.urn, only(r, CLUSTER).urn} <= set(only(r, POOLER).depends_on)


def test_no_release_when_the_cluster_runs_the_operator() -> None:
    spec = spec_for("prod", tier="medium", kubernetes__install_operators=False)
    r = render(spec)
    assert r.of_type(RELEASE) == []
    cluster = only(r, CLUSTER)
    assert set(cluster.depends_on) == {r.get("kubernetes:core/v1:Namespace", "namespace").urn,
                                       only(r, SECRET).urn, only(r, OBJECT_STORE).urn}


@pytest.mark.parametrize("tier", TIERS_)
def test_passwords_only_in_secrets(tier: str) -> None:
    r = rendered(tier)
    leaks = [f"{x.type} {x.name}: {path}" for x in r.resources for path, v in walk_plain(x.inputs)
             if "mocksecret" in str(v)]
    assert leaks == []
    secret = only(r, SECRET)
    assert secret.inputs["type"] == "kubernetes.io/basic-auth"
    assert isinstance(secret.inputs["stringData"], Secret)
    data = unwrap(secret.inputs["stringData"])
    assert data["username"] == "banyan" and data["password"].startswith("mocksecret")
    assert secret.inputs["metadata"]["name"] == "postgres-app-credentials"


@pytest.mark.parametrize(("before", "after"), [("small", "medium"), ("medium", "large"), ("large", "small")])
def test_a_tier_change_touches_only_fields_applied_in_place(before: str, after: str) -> None:
    a, b = only(rendered(before), CLUSTER), only(rendered(after), CLUSTER)
    assert (a.name, a.type) == (b.name, b.type)
    la, lb = leaves(a.plain_inputs), leaves(b.plain_inputs)
    changed = {p for p in la.keys() | lb.keys() if la.get(p) != lb.get(p)}
    assert changed, "the tiers differ; so must the Cluster"
    assert {p for p in changed if not p.startswith(IN_PLACE_FIELDS)} == set()
    def untimed(metadata: dict[str, Any]) -> dict[str, Any]:
        annotations = {k: v for k, v in metadata["annotations"].items() if k != "pulumi.com/timeoutSeconds"}
        return {**metadata, "annotations": annotations}

    assert untimed(a.plain_inputs["metadata"]) == untimed(b.plain_inputs["metadata"])


@pytest.mark.parametrize("tier", TIERS_)
def test_the_cluster_is_retained_and_protected_in_prod(tier: str) -> None:
    cluster = only(rendered(tier), CLUSTER)
    assert cluster.retain_on_delete and cluster.protect
    unprotected_stack = render(spec_for("prod", tier=tier, protect=False))
    unprotected = only(unprotected_stack, CLUSTER)
    assert unprotected.retain_on_delete and not unprotected.protect
    for release in unprotected_stack.of_type(RELEASE):
        assert release.retain_on_delete and not release.protect


def test_children_are_named_after_the_component_and_parented_to_it() -> None:
    r = rendered("large")
    component = only(r, TYPE)
    children = r.children(component)
    assert {(c.type, c.name) for c in children} == {
        (RELEASE, f"{NAME}-operator"), (SECRET, f"{NAME}-app-credentials"), (CLUSTER, f"{NAME}-cluster"),
        (POOLER, f"{NAME}-pooler"), (PDB, f"{NAME}-pooler-pdb"),
        (RELEASE, f"{NAME}-backup-plugin"), (OBJECT_STORE, f"{NAME}-object-store"),
        (SCHEDULED_BACKUP, f"{NAME}-scheduled-backup"), (NAMESPACE_PATCH, f"{NAME}-operator-namespace")}
    for c in children:
        if c.type == NAMESPACE_PATCH:
            assert c.inputs["metadata"]["name"] == "cnpg-system"
        elif c.type != RELEASE:
            assert c.inputs["metadata"]["namespace"] == "banyan"


def test_two_renders_are_identical() -> None:
    spec = spec_for("prod", tier="large")
    first, second = render(spec), render(spec)
    assert {c.name: c.inputs for c in first.resources} == {c.name: c.inputs for c in second.resources}


@pytest.mark.parametrize(("image", "version", "expected"), [
    ("postgres:16.9-alpine", 16, "ghcr.io/cloudnative-pg/postgresql:16.9-standard-bookworm"),
    ("postgres:16.15-alpine", 16, "ghcr.io/cloudnative-pg/postgresql:16.15-202608170814-standard-bookworm@sha256:"
     "0d51ec3786f2b3c7022756c32e04cc5d575f4666c51599ef5b08552529bfac6d"),
    ("postgres:17.5", 17, "ghcr.io/cloudnative-pg/postgresql:17.5-standard-bookworm"),
    ("docker.io/library/postgres:18.1-trixie@sha256:" + "a" * 64, 18,
     "ghcr.io/cloudnative-pg/postgresql:18.1-standard-bookworm"),
    ("ghcr.io/cloudnative-pg/postgresql:16.9-minimal-bookworm@sha256:" + "b" * 64, 16,
     "ghcr.io/cloudnative-pg/postgresql:16.9-minimal-bookworm@sha256:" + "b" * 64),
    ("registry.example.com:5000/pg/cnpg-postgis:16.4-3", 16, "registry.example.com:5000/pg/cnpg-postgis:16.4-3"),
])
def test_operand_image(image: str, version: int, expected: str) -> None:
    pg = tier_spec("small").postgres.model_copy(update={"image": image, "version": version})
    assert pgk.operand_image(pg) == expected


@pytest.mark.parametrize(("image", "version", "message"), [
    ("postgres:16-alpine", 16, "must start with major.minor"),
    ("postgres:17.2-alpine", 16, "is PostgreSQL 17, but postgres.version is 16"),
    ("ghcr.io/cloudnative-pg/postgresql:15.8-standard-bookworm", 16, "is PostgreSQL 15"),
])
def test_operand_image_refuses_what_it_cannot_map(image: str, version: int, message: str) -> None:
    pg = tier_spec("small").postgres.model_copy(update={"image": image, "version": version})
    with pytest.raises(ValueError, match=message):
        pgk.operand_image(pg)


@pytest.fixture(scope="module")
def server_datadir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], Path]]:
    """An initdb'd data directory of the PostgreSQL installed here (Debian's), and how to run its binaries
    (as the postgres user when the tests run as root: the server refuses root)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        pytest.skip("no PostgreSQL server installed (Debian package postgresql); parameter values unchecked")
    bindir = Path(found[-1]).parent
    prefix: list[str] = []
    # pytest's tmp directory is private to the user running the tests, and the server runs as postgres.
    base = traversable(tmp_path_factory.mktemp("pg-params"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser; the server refuses to start as root")
        prefix = [runuser, "-u", "postgres", "--"]
        shutil.chown(base, user="postgres")
    datadir = base / "data"
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True, timeout=120)
        yield [*prefix, str(bindir / "postgres"), "-D", str(datadir)], datadir
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("tier", TIERS_)
def test_a_real_server_accepts_every_parameter(tier: str, server_datadir: tuple[list[str], Path]) -> None:
    """The server parses every name and value (units included) and reports what it would run with."""
    argv, _ = server_datadir
    params = only(rendered(tier), CLUSTER).plain_inputs["spec"]["postgresql"]["parameters"]
    options = [arg for k, v in sorted(params.items()) for arg in ("-c", f"{k}={v}")]
    for name in ("work_mem", "max_slot_wal_keep_size"):
        done = subprocess.run([*argv, "-C", name, *options], check=False, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
    done = subprocess.run([*argv, "-C", "shared_buffers", *options, "-c", "work_mem=1kX"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "work_mem" in done.stderr, "the check must be able to fail"
