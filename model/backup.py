"""PostgreSQL backups and restore resolved from `banyan:postgres.backup` / `banyan:postgres.restore`: one spec for
both targets (Docker: pgBackRest; Kubernetes: CloudNativePG's Barman Cloud plugin), with every problem named by key."""

from __future__ import annotations

from model.config import NAMESPACE, StackConfig
from model.errors import ConfigProblem
from model.images import parse_image
from model.spec import BackupSpec, RestoreSpec

# Hours between full backups that a schedule can keep exactly on both targets: CloudNativePG's ScheduledBackup is a
# cron expression, and only divisors of a day (or a week) repeat evenly in one.
FULL_BACKUP_HOURS = (1, 2, 3, 4, 6, 8, 12, 24, 168)
# A backup is stale when its successor is overdue by this much: a full backup of a large database takes hours.
MIN_STALE_MARGIN_HOURS = 2


def default_backlog_mib(storage_gib: int) -> int:
    """WAL a failing archive may hold on the primary's volume: a quarter of the planned volume, as the slot cap."""
    return max(1024, storage_gib * 1024 // 4)


def stale_margin_hours(full_backup_hours: int) -> int:
    return max(MIN_STALE_MARGIN_HOURS, full_backup_hours // 4)


def _problem(key: str, value: object, allowed: str) -> ConfigProblem:
    return ConfigProblem(f"{NAMESPACE}:postgres.{key}", value, allowed)


def backup_enabled(config: StackConfig) -> bool:
    """On by default where the stack is production's (Kubernetes), off by default on Docker (dev)."""
    enabled = config.postgres.backup.enabled
    return config.target == "kubernetes" if enabled is None else enabled


def resolve(config: StackConfig, *, name: str, storage_gib: int,
            secret_keys: frozenset[str]) -> tuple[BackupSpec | None, RestoreSpec | None, list[ConfigProblem]]:
    """The backup and restore specs (None: off), or the problems that stop the stack."""
    cfg, restore_cfg = config.postgres.backup, config.postgres.restore
    problems: list[ConfigProblem] = []
    if not backup_enabled(config):
        if restore_cfg.enabled:
            problems.append(_problem("restore.enabled", True, "a restore reads the backup repository and the "
                                     "restored server archives into it: set banyan:postgres.backup.enabled true "
                                     "(and its repository)"))
        return None, None, problems

    if config.target not in ("docker", "kubernetes"):
        problems.append(_problem("backup.enabled", True, f"backups are built for the docker and kubernetes targets; "
                                 f"not yet for {config.target}: set banyan:postgres.backup.enabled false"))
    if cfg.full_backup_hours not in FULL_BACKUP_HOURS:
        problems.append(_problem("backup.full_backup_hours", cfg.full_backup_hours,
                                 "allowed: " + ", ".join(map(str, FULL_BACKUP_HOURS)) + " (hours that divide a day, "
                                 "or a week: a schedule repeats them evenly)"))
    if config.target == "kubernetes" and cfg.repository is None:
        problems.append(ConfigProblem(f"{NAMESPACE}:postgres.backup.repository", None,
                                      "Kubernetes keeps backups in an object store: set s3://<bucket>/<path> (or "
                                      "banyan:postgres.backup.enabled false to run without backups)", missing=True))
    keys = (cfg.access_key_id is not None, cfg.secret_access_key is not None)
    if keys[0] != keys[1]:
        missing = "secret_access_key" if keys[0] else "access_key_id"
        problems.append(ConfigProblem(f"{NAMESPACE}:postgres.backup.{missing}", None,
                                      "set both S3 keys, or neither", missing=True))
    if any(keys) and cfg.repository is None:
        problems.append(_problem("backup.repository", None, "S3 keys are set but no s3:// repository is"))
    if any(keys) and f"{NAMESPACE}:postgres" not in secret_keys:
        problems.append(_problem("backup.secret_access_key", "[not shown]", "must be stored as a secret: "
                                 "pulumi config set --secret --path 'postgres.backup.secret_access_key' <key> "
                                 "(and the same for access_key_id)"))
    if config.target == "docker" and cfg.repository is not None and not all(keys):
        problems.append(ConfigProblem(f"{NAMESPACE}:postgres.backup.access_key_id", None,
                                      "on Docker an s3:// repository needs access_key_id and secret_access_key "
                                      "(as secrets)", missing=True))
    if config.target == "docker":
        image = parse_image(config.postgres.image)
        if image.is_docker_official("postgres"):
            problems.append(_problem("image", config.postgres.image,
                                     "backups on Docker run pgBackRest inside the PostgreSQL container, and the "
                                     "official image has none: use an image with PostgreSQL and pgBackRest (e.g. "
                                     "banyan-local/postgres from scripts/build-images, or the official image with "
                                     "`apt-get install pgbackrest` on top)"))

    server_name = cfg.server_name or name
    backup = BackupSpec(
        repository=cfg.repository,
        endpoint_url=cfg.endpoint_url,
        region=cfg.region,
        access_key_id=cfg.access_key_id,
        secret_access_key=cfg.secret_access_key,
        retention_days=cfg.retention_days,
        full_backup_hours=cfg.full_backup_hours,
        stale_margin_hours=stale_margin_hours(cfg.full_backup_hours),
        max_wal_backlog_mib=cfg.max_wal_backlog_mib or default_backlog_mib(storage_gib),
        server_name=server_name,
        object_store_cidrs=cfg.object_store_cidrs,
    )
    restore = None
    if restore_cfg.enabled:
        source = restore_cfg.source_server or name
        # Barman Cloud refuses to archive into a server name that already holds WAL (barman-cloud-check-wal-archive):
        # the restored cluster writes a new history beside the one it came from.
        if config.target == "kubernetes" and source == server_name:
            problems.append(_problem("backup.server_name", server_name,
                                     f"a restored Cluster must archive under a new server name, not the one it "
                                     f"restores from ({source!r}): set e.g. {name}-2 (and keep "
                                     f"banyan:postgres.restore.source_server {source!r})"))
        restore = RestoreSpec(target_time=restore_cfg.target_time, source_server=source,
                              over_existing_data=restore_cfg.over_existing_data)
    elif restore_cfg.target_time or restore_cfg.over_existing_data or restore_cfg.source_server:
        problems.append(_problem("restore.enabled", False, "restore settings are set but restore is off: set "
                                 "banyan:postgres.restore.enabled true, or remove them"))
    return backup, restore, problems
