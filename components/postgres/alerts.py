"""The backups' alert rules, as data: Prometheus rules (alert, expr, for, labels, annotations) for both targets, for
the monitoring part to load beside its own (`rule_group(spec)` is one group of a rule file, or of a PrometheusRule's
spec.groups). Docker reads the backup container's metrics (components/postgres/backup.py writes them and serves
them on METRICS_PORT); Kubernetes reads CloudNativePG's exporter (pg_stat_archiver, the operator's default
queries) and the Barman Cloud plugin's metrics (barman_cloud_cloudnative_pg_io_*, its observability docs)."""

from __future__ import annotations

from typing import Any

from components.postgres import backup as pg_backup
from model.spec import PlatformSpec

GROUP = "banyan.postgres-backups"
# Archiving failing this long fires (the 5 minutes): a single failed segment that the next retry pushes does
# not.
ARCHIVE_FAILING_FOR_S = 300
# The backup container (Docker) or the plugin's metric (Kubernetes) silent this long: the staleness alert would be
# blind, which is an alert of its own.
METRICS_SILENT_FOR_S = 900
# A volume this full is worth a page: a failing archive grows pg_wal on the primary's volume.
VOLUME_FREE_MIN_RATIO = 0.15


def _duration(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def _rule(name: str, expr: str, for_s: int, severity: str, summary: str, description: str,
          action: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": _duration(for_s), "labels": {"severity": severity},
            "annotations": {"summary": summary, "description": description, "action": action}}


def rules(spec: PlatformSpec) -> list[dict[str, Any]]:
    """The rules; empty when the stack takes no backups."""
    pg = spec.postgres
    backup = pg.backup
    if backup is None:
        return []
    stale = backup.stale_after_s
    schedule = (f"every {backup.full_backup_hours} h plus a {backup.stale_margin_hours} h margin "
                f"({stale} s)")
    if spec.target == "kubernetes":
        ns = f'namespace="{spec.kubernetes.namespace}"'
        pods = f'{ns}, pod=~"{pg.name}-[0-9]+"'
        archiving = (f"cnpg_pg_stat_archiver_last_failed_time{{{pods}}} > "
                     f"cnpg_pg_stat_archiver_last_archived_time{{{pods}}}")
        newest = f"max(barman_cloud_cloudnative_pg_io_last_available_backup_timestamp{{{pods}}})"
        volume = (f'kubelet_volume_stats_available_bytes{{{ns}, persistentvolumeclaim=~"{pg.name}-[0-9]+"}} / '
                  f'kubelet_volume_stats_capacity_bytes{{{ns}, persistentvolumeclaim=~"{pg.name}-[0-9]+"}} '
                  f"< {VOLUME_FREE_MIN_RATIO}")
        silent = f"absent({newest})"
        where = f"the Barman Cloud plugin's object store {backup.repository}"
        logs = (f"kubectl -n {spec.kubernetes.namespace} logs {pg.name}-1 -c plugin-barman-cloud; "
                f"kubectl -n {spec.kubernetes.namespace} get backups")
    else:
        archiving = "banyan_postgres_wal_archive_failing == 1"
        newest = "banyan_postgres_backup_last_full_timestamp_seconds"
        volume = ""
        silent = ("absent(banyan_postgres_backup_metrics_timestamp_seconds) or "
                  f"time() - banyan_postgres_backup_metrics_timestamp_seconds > {3 * pg_backup.POLL_S}")
        where = backup.repository or "the local backup volume"
        logs = f"docker logs {spec.project}-{spec.stack}-{pg.backup_name}; docker logs {spec.project}-{spec.stack}-" \
               f"{pg.primary_name}"
    out = [
        _rule("BanyanPostgresWalArchivingFailing", archiving, ARCHIVE_FAILING_FOR_S, "critical",
              "PostgreSQL cannot archive WAL",
              f"The archiver's last attempt failed and has kept failing for {ARCHIVE_FAILING_FOR_S // 60} minutes: "
              f"no point-in-time recovery past the last archived segment, and WAL piles up on the primary's "
              f"volume (Docker: up to {backup.max_wal_backlog_mib} MiB, then pgBackRest drops it and the archive "
              "has a gap).",
              f"Check that {where} is reachable and writable; {logs}"),
        _rule("BanyanPostgresBaseBackupStale", f"time() - {newest} > {stale}", 300, "critical",
              "The newest PostgreSQL base backup is older than its schedule",
              f"Full backups are taken {schedule}; the newest is {{{{ $value | humanizeDuration }}}} old. A restore "
              "replays every WAL file since it, and retention may have nothing to keep.",
              f"Look at the last backup attempt ({logs}) and take one by hand"),
        _rule("BanyanPostgresBackupMetricsMissing", silent, METRICS_SILENT_FOR_S, "warning",
              "The PostgreSQL backup metrics are missing",
              "Without them the staleness and archiving alerts cannot fire.",
              "Docker: is the backup container running (and scraped)? Kubernetes: is the Barman Cloud plugin "
              "installed and its sidecar in the instance pods?"),
    ]
    if volume:
        out.append(_rule("BanyanPostgresVolumeFilling", volume, 300, "critical",
                         "A PostgreSQL volume is almost full",
                         f"Less than {VOLUME_FREE_MIN_RATIO:.0%} of {{{{ $labels.persistentvolumeclaim }}}} is free; "
                         "a failing archive keeps every WAL segment on the primary's volume until it is pushed.",
                         "Fix the archive (BanyanPostgresWalArchivingFailing) or grow banyan:postgres.storage_gib"))
    return out


def rule_group(spec: PlatformSpec) -> dict[str, Any]:
    return {"name": GROUP, "rules": rules(spec)}


def scrape_target(spec: PlatformSpec) -> tuple[str, int] | None:
    """Docker: where Prometheus scrapes the backup container (host, port); None on Kubernetes (the exporter is the
    instance pods' own, on their metrics port) or without backups."""
    if spec.postgres.backup is None or spec.target != "docker":
        return None
    return spec.postgres.backup_name, pg_backup.METRICS_PORT
