"""Backups and restore (banyan:postgres.backup / .restore): the settings, what each target renders from them, the
preview's refusals, the alert rules and the drill's checks. Pure: no server, no engine (the real-server suite runs
the same files: tests/servers/test_postgres_backup_servers.py)."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest

from components.postgres import alerts, backup_kubernetes
from components.postgres import backup as pg_backup
from components.postgres.config import render_entrypoint, render_postgresql_conf
from model import backup as backups
from model.config import StackConfig
from model.errors import ConfigError
from model.preflight import POSTGRES_RESTORE_LABEL, EngineContainer, EngineSnapshot
from model.preflight import check as docker_check
from model.preflight_kubernetes import KubernetesSnapshot
from model.preflight_kubernetes import check as k8s_check
from model.spec import PlatformSpec
from testkit import Secret, unwrap
from testkit.k8s_check import crd_problems
from tests.helpers import env_of, shared_file, spec_for, uploads
from tests.helpers import promtool as _promtool
from tooling import drill

IMAGE = "banyan-local/postgres:16.9"
DOCKER_ON = {"postgres__backup__enabled": True, "postgres__image": IMAGE}
S3 = {"postgres__backup__repository": "s3://acme-backups/banyan",
      "postgres__backup__endpoint_url": "https://minio.example.com:9000"}


def problems_of(stack: str, **sets: Any) -> list[str]:
    with pytest.raises(ConfigError) as err:
        spec_for(stack, **sets)
    return [p.render() for p in err.value.problems]


# ---- the settings --------------------------------------------------------------------------------------------


def test_on_by_default_in_prod_off_by_default_in_dev() -> None:
    assert spec_for("dev").postgres.backup is None
    prod = spec_for("prod").postgres.backup
    assert prod is not None and prod.repository == "s3://banyan-prod-backups/postgres" and prod.retention_days == 14
    assert spec_for("dev", **DOCKER_ON).postgres.backup is not None
    assert spec_for("prod", postgres__backup__enabled=False).postgres.backup is None


def test_kubernetes_needs_an_object_store() -> None:
    found = problems_of("prod", postgres__backup__repository=None)
    assert any(p.startswith("banyan:postgres.backup.repository: not set; Kubernetes keeps backups in an object "
                            "store") for p in found), found


def test_the_official_image_is_refused_for_backups_on_docker_naming_the_key() -> None:
    found = problems_of("dev", postgres__backup__enabled=True)
    assert any(p.startswith("banyan:postgres.image: got \"postgres:") and "pgBackRest" in p for p in found), found


@pytest.mark.parametrize(("sets", "key", "words"), [
    ({"postgres__backup__full_backup_hours": 5}, "backup.full_backup_hours", "1, 2, 3, 4, 6, 8, 12, 24, 168"),
    ({"postgres__backup__repository": "https://bucket"}, "backup.repository", "s3://<bucket>/<path>"),
    ({"postgres__backup__endpoint_url": "minio:9000"}, "backup.endpoint_url", "http:// or https://"),
    ({"postgres__backup__retention_days": 0}, "backup.retention_days", "greater than or equal to 1"),
    ({"postgres__backup__access_key_id": "AKIA"}, "backup.secret_access_key", "set both S3 keys"),
    ({"postgres__restore__target_time": "yesterday"}, "restore.target_time", "RFC 3339"),
    ({"postgres__restore__target_time": "\"2026-02-30T10:00:00Z\""}, "restore.target_time", "not a real date"),
    ({"postgres__restore__over_existing_data": True}, "restore.enabled", "restore is off"),
    ({"postgres__restore__enabled": True}, "backup.server_name", "new server name"),
])
def test_bad_settings_name_the_key_and_what_is_allowed(sets: dict[str, Any], key: str, words: str) -> None:
    found = problems_of("prod", **sets)
    assert any(p.startswith(f"banyan:postgres.{key}:") and words in p for p in found), found


def test_a_restore_needs_backups_on() -> None:
    found = problems_of("dev", postgres__restore__enabled=True)
    assert any(p.startswith("banyan:postgres.restore.enabled: got true;") for p in found), found


def _config(**postgres: Any) -> StackConfig:
    return StackConfig.model_validate({
        "target": "kubernetes", "tier": "small", "gateway": {"image": "gw:1.0"},
        "services": [{"name": "svc", "image": "svc:1.0"}], "postgres": postgres})


def test_s3_keys_must_be_stored_as_secrets() -> None:
    config = _config(backup={"repository": "s3://acme-backups/x", "access_key_id": "AKIA",
                             "secret_access_key": "s3cr3t"})
    _, _, plain = backups.resolve(config, name="postgres", storage_gib=10, secret_keys=frozenset())
    assert [p.key for p in plain] == ["banyan:postgres.backup.secret_access_key"]
    assert "--secret" in plain[0].allowed and "s3cr3t" not in plain[0].render()
    spec, _, secret = backups.resolve(config, name="postgres", storage_gib=10,
                                      secret_keys=frozenset({"banyan:postgres"}))
    assert secret == [] and spec is not None and spec.access_key_id == "AKIA"


def test_the_schedule_and_the_staleness_threshold_come_from_the_hours() -> None:
    spec = spec_for("prod", postgres__backup__full_backup_hours=6).postgres.backup
    assert spec is not None
    assert spec.stale_after_s == (6 + backups.MIN_STALE_MARGIN_HOURS) * 3600
    weekly = spec_for("prod", postgres__backup__full_backup_hours=168).postgres.backup
    assert weekly is not None and weekly.stale_after_s == (168 + 42) * 3600


@pytest.mark.parametrize("hours", backups.FULL_BACKUP_HOURS)
def test_every_allowed_interval_is_an_even_cron_schedule(hours: int) -> None:
    seconds, minutes, hour, dom, month, dow = backup_kubernetes.schedule(hours).split()
    assert (seconds, minutes, dom, month) == ("0", "0", "*", "*")
    runs_per_week = 1 if dow == "0" else 7 * (24 if hour == "*" else 1 if hour == "0" else 24 // int(hour[2:]))
    assert runs_per_week * hours == 168


# ---- Docker: what the containers get -------------------------------------------------------------------------


def test_backups_off_leave_the_files_without_archiving() -> None:
    pg = spec_for("dev").postgres
    assert "archive" not in render_postgresql_conf(pg) and "pgbackrest" not in render_entrypoint(pg)
    assert "unix_socket_directories = '/var/run/postgresql'" in render_postgresql_conf(pg)


def test_backups_on_archive_through_pgbackrest_with_the_queue_bounded() -> None:
    pg = spec_for("dev", **DOCKER_ON).postgres
    conf = render_postgresql_conf(pg)
    assert "archive_mode = on" in conf and "archive_timeout = 60" in conf
    assert re.search(r"archive_command = 'pgbackrest --config=\S+ --stanza=postgres archive-push %p'", conf)
    br = pg_backup.render_pgbackrest_conf(pg, pg_backup.BackupPaths("/var/lib/postgresql/data",
                                                                     "/var/lib/postgresql/data/pgdata"),
                                          takes_backups=True)
    assert "repo1-type=posix" in br and "repo1-retention-full-type=time" in br and "repo1-retention-full=7" in br
    assert f"archive-push-queue-max={backups.default_backlog_mib(pg.storage_gib) * 1024 * 1024}" in br
    assert "archive-async=y" in br


def _containers(**sets: Any) -> dict[str, Any]:
    from testkit import render_stack

    r = render_stack("dev", set={k.replace("__", "."): v for k, v in sets.items()})
    return {c.plain_inputs["hostname"]: c for c in r.of_type("docker:index/container:Container")}


SECURE = {"secure": "v1:ciphertext"}


def test_docker_s3_keys_travel_as_secrets_never_in_a_file() -> None:
    clear = {**DOCKER_ON, **S3, "postgres__backup__access_key_id": "AKIAEXAMPLE",
             "postgres__backup__secret_access_key": "s3cr3t-value"}
    found = problems_of("dev", **clear)
    assert any(p.startswith("banyan:postgres.backup.secret_access_key:") and "--secret" in p for p in found), found
    secured = {**DOCKER_ON, **S3, "postgres__backup__access_key_id": SECURE,
               "postgres__backup__secret_access_key": SECURE}
    containers = _containers(**secured)
    for name in ("postgres-primary", "postgres-backup"):
        env = env_of(containers[name], secret=True)
        assert env[pg_backup.S3_KEY_ENV].startswith("mocksecret") and env[pg_backup.S3_SECRET_ENV]
        conf = uploads(containers[name])[pg_backup.PGBACKREST_CONF].content
        assert "mocksecret" not in conf
        assert "repo1-type=s3" in conf and "repo1-s3-bucket=acme-backups" in conf and "repo1-path=/banyan" in conf
        assert "repo1-s3-endpoint=minio.example.com" in conf and "repo1-storage-port=9000" in conf
    # The repository is the bucket: the primary mounts no backup volume then.
    paths = [v["containerPath"] for v in unwrap(containers["postgres-primary"].inputs)["volumes"]]
    assert pg_backup.BACKUP_MOUNT not in paths


def test_the_backup_container_shares_the_primary_volume_and_owns_the_repository() -> None:
    containers = _containers(**DOCKER_ON)
    primary, backup = containers["postgres-primary"], containers["postgres-backup"]
    vols = {v["containerPath"]: v["volumeName"] for v in unwrap(primary.inputs)["volumes"]}
    bvols = {v["containerPath"]: v["volumeName"] for v in unwrap(backup.inputs)["volumes"]}
    assert bvols["/var/lib/postgresql/data"] == vols["/var/lib/postgresql/data"]
    assert bvols[pg_backup.BACKUP_MOUNT] == vols[pg_backup.BACKUP_MOUNT]
    # The same repository and stanza; the retention only where backups are taken (a change restarts no server).
    theirs, ours = (uploads(c)[pg_backup.PGBACKREST_CONF].content for c in (primary, backup))
    assert [line for line in ours.splitlines() if "retention" not in line and "start-fast" not in line] == \
        theirs.splitlines()
    assert "repo1-retention-full=7" in ours and "retention" not in theirs
    assert unwrap(backup.inputs)["command"] == ["run"]
    assert backup.retain_on_delete is not True  # the container is disposable; its volume is the state


def test_a_restore_labels_the_primary_and_restores_with_its_target() -> None:
    target = "2026-12-01T10:30:00+01:00"
    containers = _containers(**DOCKER_ON, postgres__restore__enabled=True,
                             postgres__restore__target_time=f'"{target}"')
    primary = containers["postgres-primary"]
    spec = spec_for("dev", **DOCKER_ON, postgres__restore__enabled=True,
                    postgres__restore__target_time=f'"{target}"').postgres
    assert spec.restore is not None
    assert unwrap(primary.inputs)["labels"]  # labels are a list of {label, value}
    labels = {x["label"]: x["value"] for x in unwrap(primary.inputs)["labels"]}
    assert labels[POSTGRES_RESTORE_LABEL] == spec.restore.restore_id
    entry = uploads(primary)["/usr/local/bin/banyan-postgres-entrypoint.sh"].content
    # pgBackRest's own time format, in UTC: 10:30 at +01:00 is 09:30 UTC.
    assert "'--target=2026-12-01 09:30:00.000000+00'" in entry and "--target-action=promote" in entry
    assert pg_backup.pgbackrest_time("2026-12-01T09:30:00Z") == "2026-12-01 09:30:00.000000+00"


def test_the_restore_id_names_source_and_target_only() -> None:
    a = spec_for("dev", **DOCKER_ON, postgres__restore__enabled=True).postgres.restore
    b = spec_for("dev", **DOCKER_ON, postgres__restore__enabled=True,
                 postgres__restore__target_time='"2026-12-01T10:30:00Z"').postgres.restore
    assert a is not None and b is not None and a.restore_id != b.restore_id
    again = spec_for("dev", **DOCKER_ON, postgres__restore__enabled=True, tier="medium").postgres.restore
    assert again is not None and again.restore_id == a.restore_id


# ---- Kubernetes: the plugin's objects ---------------------------------------------------------------------------


def _k8s_objects(**sets: Any) -> dict[str, dict[str, Any]]:
    from testkit import render_stack

    r = render_stack("prod", set={k.replace("__", "."): v for k, v in sets.items()})
    return {x.inputs["kind"]: unwrap(x.inputs) for x in r.resources
            if x.type.startswith("kubernetes:") and "kind" in x.inputs
            and x.inputs["kind"] in ("Cluster", "ObjectStore", "ScheduledBackup")}


def test_the_cluster_archives_through_the_plugin_to_the_object_store() -> None:
    objs = _k8s_objects()
    cluster, store, scheduled = objs["Cluster"], objs["ObjectStore"], objs["ScheduledBackup"]
    assert cluster["spec"]["plugins"] == [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": True,
                                           "parameters": {"barmanObjectName": store["metadata"]["name"],
                                                          "serverName": "postgres"}}]
    assert "backup" not in cluster["spec"], "the in-tree barmanObjectStore is deprecated in 1.30"
    assert store["spec"]["configuration"]["destinationPath"] == "s3://banyan-prod-backups/postgres"
    assert store["spec"]["configuration"]["s3Credentials"] == {"inheritFromIAMRole": True}
    assert store["spec"]["retentionPolicy"] == "14d"
    assert scheduled["spec"]["method"] == "plugin" and scheduled["spec"]["schedule"] == "0 0 0 * * *"
    assert scheduled["spec"]["cluster"] == {"name": cluster["metadata"]["name"]}
    crds = shared_file("schemas", "crds")
    for obj in objs.values():
        assert crd_problems(obj, crds) == [], obj["kind"]


def test_a_restore_bootstraps_from_the_store_to_the_time() -> None:
    objs = _k8s_objects(postgres__restore__enabled=True, postgres__backup__server_name="postgres-2",
                        postgres__restore__target_time='"2026-12-01T10:30:00Z"')
    spec = objs["Cluster"]["spec"]
    assert spec["bootstrap"]["recovery"]["source"] == "origin"
    assert spec["bootstrap"]["recovery"]["recoveryTarget"] == {"targetTime": "2026-12-01T10:30:00Z"}
    assert spec["bootstrap"]["recovery"]["secret"] == {"name": "postgres-app-credentials"}
    assert spec["externalClusters"][0]["plugin"]["parameters"] == {"barmanObjectName": "postgres-backups",
                                                                  "serverName": "postgres"}
    assert spec["plugins"][0]["parameters"]["serverName"] == "postgres-2"
    assert crd_problems(objs["Cluster"], shared_file("schemas", "crds")) == []


def test_keys_become_a_secret_the_store_references() -> None:
    from testkit import render_stack

    r = render_stack("prod", set={"postgres.backup.endpoint_url": "https://minio.example.com",
                                  "postgres.backup.access_key_id": SECURE,
                                  "postgres.backup.secret_access_key": SECURE})
    secret = next(x for x in r.of_type("kubernetes:core/v1:Secret")
                  if x.name.endswith("postgres-backup-credentials"))
    assert isinstance(secret.inputs["stringData"], Secret)
    store = next(unwrap(x.inputs) for x in r.resources if x.inputs.get("kind") == "ObjectStore")
    ref = store["spec"]["configuration"]["s3Credentials"]
    name = unwrap(secret.inputs)["metadata"]["name"]
    assert ref == {"accessKeyId": {"name": name, "key": "ACCESS_KEY_ID"},
                   "secretAccessKey": {"name": name, "key": "ACCESS_SECRET_KEY"}}
    assert store["spec"]["configuration"]["endpointURL"] == "https://minio.example.com"


# ---- the preview's refusal of a restore over existing data ------------------------------------------------------


def _primary(labels: dict[str, str] | None = None) -> EngineContainer:
    base = {"banyan.project": "banyan", "banyan.stack": "dev", "banyan.part": "postgres",
            "banyan.instance": "postgres-primary"}
    return EngineContainer("banyan-dev-postgres-primary", "running", {**base, **(labels or {})})


def _restore_spec(**sets: Any) -> PlatformSpec:
    return spec_for("dev", **DOCKER_ON, postgres__restore__enabled=True, **sets)


def test_docker_refuses_a_restore_onto_a_primary_with_data() -> None:
    spec = _restore_spec()
    found = [p.render() for p in docker_check(spec, EngineSnapshot((_primary(),))).problems]
    assert any(p.startswith("banyan:postgres.restore.enabled: got true; the primary postgres-primary already exists")
               and "over_existing_data true" in p for p in found), found
    # No primary yet (a new stack, or lost volumes): the restore goes ahead.
    assert docker_check(spec, EngineSnapshot(())).problems == ()
    # The primary this very restore filled: nothing to refuse on the next preview.
    assert spec.postgres.restore is not None
    done = _primary({POSTGRES_RESTORE_LABEL: spec.postgres.restore.restore_id})
    assert docker_check(spec, EngineSnapshot((done,))).problems == ()
    # Said explicitly: allowed.
    assert docker_check(_restore_spec(postgres__restore__over_existing_data=True),
                        EngineSnapshot((_primary(),))).problems == ()


def _live_cluster(recovery_from: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"instances": 4, "storage": {"size": "200Gi"}}
    if recovery_from:
        spec["bootstrap"] = {"recovery": {"source": "origin"}}
        spec["externalClusters"] = [{"name": "origin", "plugin": {"name": "barman-cloud.cloudnative-pg.io",
                                                                  "parameters": {"serverName": recovery_from}}}]
    else:
        spec["bootstrap"] = {"initdb": {"database": "banyan"}}
    return {"metadata": {"name": "postgres"}, "spec": spec}


def test_kubernetes_refuses_a_restore_over_a_live_cluster_with_the_procedure() -> None:
    spec = spec_for("prod", postgres__restore__enabled=True, postgres__backup__server_name="postgres-2")
    live = KubernetesSnapshot.from_objects("banyan", postgres_cluster=_live_cluster(None))
    found = [p.render() for p in k8s_check(spec, live).problems]
    assert any("kubectl -n banyan delete cluster postgres" in p for p in found), found
    restored = KubernetesSnapshot.from_objects("banyan", postgres_cluster=_live_cluster("postgres"))
    assert not [p for p in k8s_check(spec, restored).problems if "restore" in p.key]
    assert not [p for p in k8s_check(spec, KubernetesSnapshot("banyan")).problems if "restore" in p.key]


# ---- alert rules -------------------------------------------------------------------------------------------------


def _prometheus_rule(spec: PlatformSpec) -> dict[str, Any]:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "banyan-backups", "namespace": "banyan"},
            "spec": {"groups": [alerts.rule_group(spec)]}}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_rules_validate_as_a_prometheus_rule(stack: str) -> None:
    spec = spec_for(stack, **(DOCKER_ON if stack == "dev" else {}))
    names = {r["alert"] for r in alerts.rules(spec)}
    assert {"BanyanPostgresWalArchivingFailing", "BanyanPostgresBaseBackupStale",
            "BanyanPostgresBackupMetricsMissing"} <= names
    assert crd_problems(_prometheus_rule(spec), shared_file("schemas", "crds")) == []
    failing = next(r for r in alerts.rules(spec) if r["alert"] == "BanyanPostgresWalArchivingFailing")
    assert failing["for"] == "5m"
    stale = next(r for r in alerts.rules(spec) if r["alert"] == "BanyanPostgresBaseBackupStale")
    assert spec.postgres.backup is not None and stale["expr"].endswith(f"> {spec.postgres.backup.stale_after_s}")


def test_no_rules_without_backups() -> None:
    assert alerts.rules(spec_for("dev")) == [] and alerts.scrape_target(spec_for("dev")) is None


def test_every_docker_metric_the_rules_read_is_one_the_backup_container_writes() -> None:
    spec = spec_for("dev", **DOCKER_ON)
    script = pg_backup.render_backup_script(spec.postgres, pg_backup.BackupPaths("/m", "/m/pgdata"))
    written = set(re.findall(r"^\t+echo \"(banyan_[a-z_]+) ", script, re.MULTILINE))
    read = {m for r in alerts.rules(spec) for m in re.findall(r"banyan_[a-z_]+", r["expr"])}
    assert read and read <= written, read - written
    assert alerts.scrape_target(spec) == ("postgres-backup", pg_backup.METRICS_PORT)


def test_kubernetes_rules_read_the_plugin_and_cnpg_metrics_of_this_cluster() -> None:
    spec = spec_for("prod")
    exprs = " ".join(r["expr"] for r in alerts.rules(spec))
    assert "barman_cloud_cloudnative_pg_io_last_available_backup_timestamp" in exprs
    assert "cnpg_pg_stat_archiver_last_failed_time" in exprs and 'namespace="banyan"' in exprs


# ---- the drill's report and checks -------------------------------------------------------------------------------


def _report(point: str | None, tables: dict[str, int]) -> drill.DrillReport:
    lines = ["drill_restore_ms=1234", "drill_target=latest", f"drill_recovery_point={point or ''}",
             "drill_timeline=2", *(f"drill_table={k}={v}" for k, v in tables.items()), "drill_status=restored"]
    return drill.parse("noise from pgbackrest\n" + "\n".join(lines))


def test_the_drill_report_is_parsed() -> None:
    report = _report("2026-12-01 10:29:59.5+00", {"public.orders": 500, "public.a=b": 1})
    assert report.recovery_point == datetime.datetime(2026, 12, 1, 10, 29, 59, 500000, tzinfo=datetime.UTC)
    assert report.tables == {"public.orders": 500, "public.a=b": 1} and report.timeline == 2
    with pytest.raises(ValueError, match="drill_status"):
        drill.parse("restore failed")


def test_the_drill_fails_on_a_missing_table_or_a_recovery_point_after_the_target() -> None:
    report = _report("2026-12-01 10:31:00+00", {"public.orders": 500})
    assert drill.check(report, target_time=None, live_tables=["public.orders"]) == []
    assert "public.payments" in drill.check(report, target_time=None,
                                            live_tables=["public.orders", "public.payments"])[0]
    assert "later than the target" in drill.check(report, target_time="2026-12-01T10:30:00Z", live_tables=None)[0]
    assert drill.check(report, target_time="2026-12-01T10:32:00Z", live_tables=None) == []
    empty = _report(None, {})
    assert "nothing before it" in drill.check(empty, target_time="2026-12-01T10:30:00Z", live_tables=None)[0]


def test_env_of_the_backup_container_carries_no_key_without_s3() -> None:
    backup = _containers(**DOCKER_ON)["postgres-backup"]
    assert pg_backup.S3_KEY_ENV not in env_of(backup)


# ---- the rules as Prometheus evaluates them (promtool, Debian's prometheus package) -------------------------------


def _promtool_cases(spec: PlatformSpec) -> list[dict[str, Any]]:
    """Series in 1-minute steps from time 0 (promtool's time() is seconds since then); each case says at which
    minutes the alert fires and where it stays silent."""
    backup = spec.postgres.backup
    assert backup is not None
    stale_min = backup.stale_after_s // 60
    if spec.target == "kubernetes":
        pod = {"namespace": spec.kubernetes.namespace, "pod": f"{spec.postgres.name}-1"}
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(pod.items()))
        failed, archived = (f"cnpg_pg_stat_archiver_last_failed_time{{{labels}}}",
                            f"cnpg_pg_stat_archiver_last_archived_time{{{labels}}}")
        newest = f"barman_cloud_cloudnative_pg_io_last_available_backup_timestamp{{{labels}}}"
        failing = {failed: "200x20", archived: "100x20"}
        healthy = {failed: "100x20", archived: "200x20"}
        fired_labels = pod
    else:
        failing = {"banyan_postgres_wal_archive_failing": "1x20"}
        healthy = {"banyan_postgres_wal_archive_failing": "0x20"}
        newest = "banyan_postgres_backup_last_full_timestamp_seconds"
        fired_labels = {}
    steps = stale_min + 20
    return [
        {"alert": "BanyanPostgresWalArchivingFailing", "series": failing, "fires": {6: fired_labels}, "silent": [4]},
        {"alert": "BanyanPostgresWalArchivingFailing", "series": healthy, "fires": {}, "silent": [10]},
        # A backup at time 0 and none since: stale once the schedule plus margin has passed, and 5 minutes more.
        {"alert": "BanyanPostgresBaseBackupStale", "series": {newest: f"0x{steps}"},
         "fires": {stale_min + 7: {}}, "silent": [stale_min - 1]},
        {"alert": "BanyanPostgresBackupMetricsMissing", "series": {"up": "1x30"}, "fires": {16: {}}, "silent": [14]},
    ]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_rules_fire_as_promtool_evaluates_them(stack: str, tmp_path: Any) -> None:
    import subprocess

    import yaml

    promtool = _promtool()
    spec = spec_for(stack, **(DOCKER_ON if stack == "dev" else {}))
    rules = tmp_path / "backups.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [alerts.rule_group(spec)]}, sort_keys=False))
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    severities = {r["alert"]: r["labels"]["severity"] for r in alerts.rules(spec)}
    tests = []
    for case in _promtool_cases(spec):
        checks: list[dict[str, Any]] = [
            {"eval_time": f"{minute}m", "alertname": case["alert"],
             "exp_alerts": [{"exp_labels": {**labels, "severity": severities[case["alert"]]}}]}
            for minute, labels in case["fires"].items()]
        checks += [{"eval_time": f"{m}m", "alertname": case["alert"], "exp_alerts": []} for m in case["silent"]]
        tests.append({"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in case["series"].items()],
                      "alert_rule_test": checks})
    # Annotations hold the rendered values; the test compares labels only.
    doc = yaml.safe_load(rules.read_text())
    for rule in doc["groups"][0]["rules"]:
        rule.pop("annotations", None)
    rules.write_text(yaml.safe_dump(doc, sort_keys=False))
    test = tmp_path / "backups.test.yml"
    test.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests}))
    done = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True, text=True, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_kubernetes_drill_prints_a_cluster_the_crd_accepts() -> None:
    import yaml

    text = drill.kubernetes_drill(spec_for("prod"), "2026-12-01T10:30:00Z")
    manifest = yaml.safe_load(text.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0])
    manifest["metadata"]["namespace"] = "banyan"
    assert crd_problems(manifest, shared_file("schemas", "crds")) == []
    assert manifest["spec"]["bootstrap"]["recovery"]["recoveryTarget"] == {"targetTime": "2026-12-01T10:30:00Z"}
    assert "plugins" not in manifest["spec"], "the drill Cluster must archive nothing"


def test_a_retention_or_schedule_change_restarts_no_server() -> None:
    """Only the backup container reads them: the PostgreSQL containers' inputs stay as they are."""
    before = _containers(**DOCKER_ON, postgres__replicas=1)
    after = _containers(**DOCKER_ON, postgres__replicas=1, postgres__backup__retention_days=30,
                        postgres__backup__full_backup_hours=6)
    for name in ("postgres-primary", "postgres-replica-1"):
        assert unwrap(before[name].inputs) == unwrap(after[name].inputs), name
    assert unwrap(before["postgres-backup"].inputs) != unwrap(after["postgres-backup"].inputs)
