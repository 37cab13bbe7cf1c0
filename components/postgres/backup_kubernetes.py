"""PostgreSQL backups on Kubernetes: CloudNativePG's Barman Cloud plugin (CNPG-I), which replaces the operator's
built-in Barman support deprecated in 1.30. An ObjectStore (the bucket, credentials, retention), the Cluster's
`spec.plugins` entry that makes the plugin its WAL archiver, a ScheduledBackup (`method: plugin`), and, to restore,
the Cluster's recovery bootstrap from the same store (`externalClusters[].plugin`). The plugin itself is a pinned
Helm release beside the operator, optional like it (it needs cert-manager for its TLS certificates)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from model import pins
from model.spec import BackupSpec, PostgresSpec

PLUGIN_NAME = "barman-cloud.cloudnative-pg.io"
OBJECT_STORE_API = "barmancloud.cnpg.io/v1"
PLUGIN_RELEASE = "barman-cloud"
PLUGIN_CHART = "plugin-barman-cloud"
PLUGIN_CHART_VERSION = pins.BARMAN_CLOUD_CHART_VERSION
# The external cluster a restore reads from (a name inside the Cluster's spec only).
RESTORE_SOURCE = "origin"
S3_KEY_ID = "ACCESS_KEY_ID"
S3_SECRET_KEY = "ACCESS_SECRET_KEY"


def object_store_name(spec: PostgresSpec) -> str:
    return f"{spec.name}-backups"


def credentials_secret_name(spec: PostgresSpec) -> str:
    return f"{spec.name}-backup-credentials"


def scheduled_backup_name(spec: PostgresSpec) -> str:
    return f"{spec.name}-full"


def _backup(spec: PostgresSpec) -> BackupSpec:
    if spec.backup is None:
        raise ValueError("postgres backups are off in this spec")
    return spec.backup


def schedule(hours: int) -> str:
    """CloudNativePG's six-field cron (seconds first) for a full backup every `hours` (a divisor of 24, or 168)."""
    if hours == 168:
        return "0 0 0 * * 0"
    if hours == 24:
        return "0 0 0 * * *"
    if hours == 1:
        return "0 0 * * * *"
    if 24 % hours:
        raise ValueError(f"{hours} h does not divide a day")
    return f"0 0 */{hours} * * *"


def object_store_spec(spec: PostgresSpec) -> dict[str, Any]:
    backup = _backup(spec)
    assert backup.repository is not None, "Kubernetes backups need an object store (the resolver checks)"
    credentials: dict[str, Any]
    if backup.access_key_id is not None:
        secret = credentials_secret_name(spec)
        credentials = {"accessKeyId": {"name": secret, "key": S3_KEY_ID},
                       "secretAccessKey": {"name": secret, "key": S3_SECRET_KEY}}
    else:
        # The pods' own identity (IRSA, EKS Pod Identity, a node role): no key in the cluster at all.
        credentials = {"inheritFromIAMRole": True}
    configuration: dict[str, Any] = {
        "destinationPath": backup.repository,
        "s3Credentials": credentials,
        "wal": {"compression": "gzip", "maxParallel": 2},
        "data": {"compression": "gzip", "jobs": 2, "immediateCheckpoint": True},
    }
    if backup.endpoint_url:
        configuration["endpointURL"] = backup.endpoint_url
    return {"configuration": configuration, "retentionPolicy": f"{backup.retention_days}d"}


def plugins(spec: PostgresSpec) -> list[dict[str, Any]]:
    """The Cluster's `spec.plugins`: the Barman Cloud plugin archives WAL and takes the base backups."""
    backup = _backup(spec)
    return [{"name": PLUGIN_NAME, "isWALArchiver": True,
             "parameters": {"barmanObjectName": object_store_name(spec), "serverName": backup.server_name}}]


def recovery_bootstrap(spec: PostgresSpec, app_secret: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`bootstrap.recovery` and the `externalClusters` it reads from: the store the backups were archived to."""
    assert spec.restore is not None
    recovery: dict[str, Any] = {"source": RESTORE_SOURCE, "database": spec.database, "owner": spec.user,
                                # The owner's password is this deployment's, not the one inside the backup.
                                "secret": {"name": app_secret}}
    if spec.restore.target_time is not None:
        recovery["recoveryTarget"] = {"targetTime": spec.restore.target_time}
    external = [{"name": RESTORE_SOURCE, "plugin": {
        "name": PLUGIN_NAME,
        "parameters": {"barmanObjectName": object_store_name(spec), "serverName": spec.restore.source_server},
    }}]
    return {"recovery": recovery}, external


def scheduled_backup_spec(spec: PostgresSpec) -> dict[str, Any]:
    backup = _backup(spec)
    return {
        "schedule": schedule(backup.full_backup_hours),
        "cluster": {"name": spec.name},
        "method": "plugin",
        "pluginConfiguration": {"name": PLUGIN_NAME},
        # A first backup as soon as the schedule exists: archiving without a base backup restores nothing.
        "immediate": True,
        # The Backup objects go with the schedule; the backups in the store stay (retention removes them).
        "backupOwnerReference": "self",
        "target": "prefer-standby",
    }


def object_store_ports(spec: PostgresSpec) -> tuple[int, ...]:
    """Where the instance pods (the plugin's sidecar) reach the store: HTTPS, or the endpoint's own port."""
    backup = _backup(spec)
    if backup.endpoint_url:
        url = urlsplit(backup.endpoint_url)
        return (url.port or (443 if url.scheme == "https" else 80),)
    return (443,)
