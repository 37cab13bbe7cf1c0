"""PostgreSQL: a primary and streaming read replicas, with the files they run on rendered from the spec."""

from components.postgres.component import PostgresCluster
from components.postgres.config import (
    health_command,
    render_entrypoint,
    render_pg_hba_conf,
    render_postgresql_conf,
    render_reconcile_sql,
)
from components.postgres.kubernetes import OPERATOR_NAMESPACE

__all__ = [
    "OPERATOR_NAMESPACE",
    "PostgresCluster",
    "health_command",
    "render_entrypoint",
    "render_pg_hba_conf",
    "render_postgresql_conf",
    "render_reconcile_sql",
]
