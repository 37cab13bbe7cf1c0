"""PostgreSQL: a primary and streaming read replicas, with the files they run on rendered from the spec."""

from components.postgres.config import (
    health_command,
    pg_hba_conf,
    postgresql_conf,
    primary_init_script,
    replica_entrypoint,
)
from components.postgres.docker import PostgresCluster
from components.postgres.kubernetes import OPERATOR_NAMESPACE

__all__ = [
    "OPERATOR_NAMESPACE",
    "PostgresCluster",
    "health_command",
    "pg_hba_conf",
    "postgresql_conf",
    "primary_init_script",
    "replica_entrypoint",
]
