"""PostgreSQL files rendered from the spec: server config, client authentication, primary init and replica seeding."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from model.spec import PostgresSpec

# Oldest major version these renderers know every emitted setting for (max_slot_wal_keep_size is 13+).
MIN_VERSION = 13
# The official image's superuser (POSTGRES_USER's default); it is reachable over the unix socket only.
SUPERUSER = "postgres"

CONFIG_DIR = "/etc/postgresql"
CONF_PATH = f"{CONFIG_DIR}/postgresql.conf"
HBA_PATH = f"{CONFIG_DIR}/pg_hba.conf"
# The image runs *.sh here once, on an empty data directory, against a socket-only temporary server.
INIT_PATH = "/docker-entrypoint-initdb.d/10-banyan-roles.sh"
REPLICA_ENTRYPOINT_PATH = "/usr/local/bin/banyan-replica-entrypoint.sh"
# The image's own entrypoint, on PATH in every official postgres image.
IMAGE_ENTRYPOINT = "docker-entrypoint.sh"
# The image's (and Debian's) compiled-in socket directory, writable by the postgres user.
SOCKET_DIR = "/var/run/postgresql"
# Outside the data directory: written from the environment on every start, never copied by a base backup.
REPLICATION_PASSFILE = f"{SOCKET_DIR}/.replication.pgpass"

APP_PASSWORD_ENV = "POSTGRES_APP_PASSWORD"
REPLICATION_PASSWORD_ENV = "POSTGRES_REPLICATION_PASSWORD"

# A replica waits for the primary at most this long (attempts x (probe timeout + pause)), then exits
# non-zero so Docker's restart policy tries again: a bounded loop, never an open-ended hang.
READY_ATTEMPTS = 60
READY_PROBE_TIMEOUT_S = 3
READY_PAUSE_S = 2

_SLOT_NAME_MAX = 63  # NAMEDATALEN - 1


@dataclass(frozen=True)
class DataLayout:
    """Where the data volume mounts and where PGDATA lives inside it."""

    mount: str
    pgdata: str


def data_layout(version: int) -> DataLayout:
    """The image's own volume path per version, with PGDATA one level below it.

    Up to 17 the image declares VOLUME /var/lib/postgresql/data; from 18 it declares /var/lib/postgresql
    with PGDATA at /var/lib/postgresql/<major>/docker. Mounting anywhere else would leave the image's
    anonymous volume over the real data. Below 18 PGDATA is a subdirectory so that a replica's seed
    can land beside it on the same volume and be renamed into place (atomic) only when complete.
    """
    _check_version(version)
    if version >= 18:
        return DataLayout(mount="/var/lib/postgresql", pgdata=f"/var/lib/postgresql/{version}/docker")
    return DataLayout(mount="/var/lib/postgresql/data", pgdata="/var/lib/postgresql/data/pgdata")


def _check_version(version: int) -> None:
    if version < MIN_VERSION:
        raise ValueError(f"PostgreSQL {version} is not supported; these renderers need {MIN_VERSION} or later")


def _check_roles(spec: PostgresSpec) -> None:
    roles = {"user": spec.user, "replication_user": spec.replication_user}
    for key, role in roles.items():
        if role == SUPERUSER:
            raise ValueError(f"postgres.{key} must not be {SUPERUSER!r}: that is the image's superuser")
    if spec.user == spec.replication_user:
        raise ValueError("postgres.user must differ from the replication user")


def instance_name(spec: PostgresSpec, replica: int | None = None) -> str:
    """The primary (replica=None) or replica `replica` (1-based): its container and host name."""
    if replica is None:
        return spec.primary_name
    if not 1 <= replica <= spec.replicas:
        raise ValueError(f"replica {replica} does not exist; the spec has {spec.replicas}")
    return spec.replica_names[replica - 1]


def slot_name(instance: str) -> str:
    """A physical replication slot per replica, named after it (slot names allow [a-z0-9_] only)."""
    return re.sub(r"[^a-z0-9_]", "_", instance.lower())[:_SLOT_NAME_MAX]


def _ident(name: str) -> str:
    """A quoted SQL identifier: spec names are DNS labels, and a hyphen needs quotes."""
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def slot_wal_cap_mib(spec: PostgresSpec) -> int:
    """WAL retained for replication slots, capped at a quarter of the planned volume: a replica gone for
    good (or scaled away with its slot left behind) then costs bounded disk, not the primary itself."""
    return max(1024, spec.storage_gib * 1024 // 4)


def render_postgresql_conf(spec: PostgresSpec, replica: int | None = None) -> str:
    """postgresql.conf for one instance. Primary and replicas share every setting but cluster_name:
    a hot standby needs max_connections, max_wal_senders ... at least the primary's, and a replica
    may be promoted later."""
    _check_version(spec.version)
    lines = [
        f"# PostgreSQL {spec.version}, {instance_name(spec, replica)}; rendered from the stack spec.",
        "",
        "# Connections",
        "listen_addresses = '*'",
        f"port = {spec.port}",
        f"max_connections = {spec.max_connections}",
        f"unix_socket_directories = {_literal(SOCKET_DIR)}",
        "password_encryption = 'scram-sha-256'",
        "",
        "# Memory, derived from the instance's memory limit and max_connections",
        f"shared_buffers = {spec.shared_buffers_mib}MB",
        f"effective_cache_size = {spec.effective_cache_size_mib}MB",
        f"work_mem = {spec.work_mem_kib}kB",
        f"maintenance_work_mem = {spec.maintenance_work_mem_mib}MB",
        "",
        "# Streaming replication: one physical slot per replica keeps the WAL it still needs",
        "wal_level = replica",
        f"max_wal_senders = {spec.max_wal_senders}",
        f"max_replication_slots = {spec.max_replication_slots}",
        f"max_slot_wal_keep_size = {slot_wal_cap_mib(spec)}MB",
        "hot_standby = on",
        # Replicas serve reads: without feedback the primary's vacuum cancels their long queries.
        "hot_standby_feedback = on",
        f"cluster_name = {_literal(instance_name(spec, replica))}",
        "",
        "# Logging to stderr, collected by the container runtime",
        "logging_collector = off",
        "log_destination = 'stderr'",
        "log_line_prefix = '%m [%p] %q%u@%d '",
        "log_timezone = 'UTC'",
        # 'ddl' or 'all' would write CREATE/ALTER ROLE ... PASSWORD statements to the log in clear.
        "log_statement = 'none'",
        "log_min_duration_statement = 1000",
        "log_checkpoints = on",
        "log_lock_waits = on",
        "log_temp_files = 10240",
        "",
        "# Locale-independent defaults initdb would otherwise write into its own postgresql.conf",
        "timezone = 'UTC'",
        "datestyle = 'iso, mdy'",
        "default_text_search_config = 'pg_catalog.english'",
        "",
    ]
    return "\n".join(lines)


def render_pg_hba_conf(spec: PostgresSpec) -> str:
    """Client authentication: the socket trusts (the image's init and the health check use it, and
    reaching it already takes a shell in the container); every TCP connection proves a password."""
    rows = [
        ("local", "all", "all", "", "trust"),
        # Physical replication: the replication role only. `all` in the database column never matches
        # a replication connection, so every other role's replication attempt finds no line and fails.
        ("host", "replication", spec.replication_user, "all", "scram-sha-256"),
        # The replication role has no business in a database, nor the superuser over the network.
        ("host", "all", spec.replication_user, "all", "reject"),
        ("host", "all", SUPERUSER, "all", "reject"),
        ("host", "all", "all", "all", "scram-sha-256"),
    ]
    width = (8, 14, max(14, len(spec.replication_user) + 2), 8)
    out = ["# Rendered from the stack spec; the first matching line decides.",
           "# TYPE  DATABASE      USER          ADDRESS METHOD"]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row[:4], width, strict=True)]
        out.append(("".join(cells) + row[4]).rstrip())
    return "\n".join(out) + "\n"


def render_primary_init_script(spec: PostgresSpec) -> str:
    """Roles, the application database and the replicas' slots, created once on the empty primary.

    Passwords come from the environment into psql variables (psql runs the backquoted command with its
    own environment), so they appear in no file, no command line, and, with log_statement 'none' and
    log_min_error_statement raised for this session, in no server log either.
    """
    _check_roles(spec)
    slots = "\n".join(
        # Reserved at once (second argument): the slot holds WAL from now on, not only from its first use,
        # so a checkpoint during another replica's seed cannot recycle segments this one still streams.
        f"SELECT pg_create_physical_replication_slot({_literal(slot_name(r))}, true);" for r in spec.replica_names
    )
    return f"""#!/bin/sh
# Creates the application role and database, the replication role and one physical replication slot
# per replica. Run once by the image's entrypoint on an empty data directory.
# The upload is root-owned (mode 0744), so the entrypoint, running as postgres, sources this file
# instead of running it: everything happens in a subshell that cannot change the entrypoint's shell.
(
set -eu
: "${{{APP_PASSWORD_ENV}:?must hold the password of the application role}}"
: "${{{REPLICATION_PASSWORD_ENV}:?must hold the password of the replication role}}"
psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username {SUPERUSER} --dbname postgres <<'SQL'
SET log_min_error_statement = 'panic';
\\set app_password `printf '%s' "${APP_PASSWORD_ENV}"`
\\set replication_password `printf '%s' "${REPLICATION_PASSWORD_ENV}"`
CREATE ROLE {_ident(spec.user)} WITH LOGIN PASSWORD :'app_password';
CREATE ROLE {_ident(spec.replication_user)} WITH REPLICATION LOGIN PASSWORD :'replication_password';
\\unset app_password
\\unset replication_password
CREATE DATABASE {_ident(spec.database)} OWNER {_ident(spec.user)};
{slots}
SQL
)
"""


def render_replica_entrypoint(spec: PostgresSpec, replica: int) -> str:
    """The entrypoint of replica `replica` (1-based): seed once, then start like any official image.

    The standby's password stays out of the data directory: `pg_basebackup -R` writes into
    postgresql.auto.conf every connection option libpq used, a password too when it came from
    PGPASSWORD. Here the password comes from a passfile instead, so primary_conninfo holds only the
    passfile's path; the file is rewritten from the environment on every start, which also makes a
    rotated password (a recreated container with new env) take effect without touching the volume.
    """
    _check_roles(spec)
    instance = instance_name(spec, replica)
    conninfo = " ".join(
        f"{key}={value}"
        for key, value in (
            ("host", spec.primary_name),
            ("port", str(spec.port)),
            ("user", spec.replication_user),
            ("passfile", REPLICATION_PASSFILE),
            ("application_name", instance),
        )
    )
    values = {
        "instance": instance,
        "primary_host": spec.primary_name,
        "primary_port": str(spec.port),
        "replication_user": spec.replication_user,
        "slot": slot_name(instance),
        "conninfo": conninfo,
        "passfile": REPLICATION_PASSFILE,
        # A ping needs no password; naming a role and database pg_hba.conf sends to a password check
        # keeps the primary's log quiet (a client leaving at the password prompt is not logged).
        "probe_user": spec.user,
        "probe_db": spec.database,
    }
    assignments = "\n".join(f"{key}={shlex.quote(value)}" for key, value in values.items())
    return f"""#!/bin/sh
# Entrypoint of a PostgreSQL streaming replica. On an empty data directory: wait for the primary,
# seed from it with pg_basebackup (-X stream, its own slot, -R for standby.signal + primary_conninfo),
# then start through the image's entrypoint as a read-only hot standby. Later starts just start.
set -eu

{assignments}
ready_attempts={READY_ATTEMPTS}
: "${{PGDATA:?must name the data directory}}"
: "${{{REPLICATION_PASSWORD_ENV}:?must hold the password of the replication role}}"
# Beside PGDATA on the same volume: renamed into place only once complete, so an interrupted seed
# never looks like a data directory.
staging="$(dirname "$PGDATA")/basebackup.partial"

log() {{ printf '%s: %s\\n' "$instance" "$*" >&2; }}

# The server and its files belong to the postgres user; the container itself starts as root.
as_postgres() {{
	if [ "$(id -u)" != 0 ]; then
		"$@"
	elif command -v gosu >/dev/null 2>&1; then
		gosu postgres "$@"
	else
		su-exec postgres "$@"
	fi
}}

own() {{
	if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$@"; fi
}}

write_passfile() {{
	# In a password file `\\` and `:` are escaped with a backslash.
	escaped=$(printf '%s' "${REPLICATION_PASSWORD_ENV}" | sed -e 's/[\\\\:]/\\\\&/g')
	(umask 077 && printf '%s:%s:replication:%s:%s\\n' \\
		"$primary_host" "$primary_port" "$replication_user" "$escaped" >"$passfile.new")
	own "$passfile.new"
	mv -f "$passfile.new" "$passfile"
}}

wait_for_primary() {{
	attempt=1
	until pg_isready -q -h "$primary_host" -p "$primary_port" -U "$probe_user" -d "$probe_db" \\
		-t {READY_PROBE_TIMEOUT_S}; do
		if [ "$attempt" -ge "$ready_attempts" ]; then
			log "primary $primary_host:$primary_port not accepting connections after $attempt attempts"
			exit 1
		fi
		attempt=$((attempt + 1))
		sleep {READY_PAUSE_S}
	done
}}

seed() {{
	if [ -d "$PGDATA" ] && [ -n "$(ls -A "$PGDATA")" ]; then
		log "$PGDATA holds files but no PG_VERSION; refusing to seed over them"
		exit 1
	fi
	wait_for_primary
	mkdir -p "$(dirname "$staging")"
	own "$(dirname "$staging")"
	rm -rf "$staging"
	# The primary creates (and reserves WAL for) the slots of the replicas it was initialised with; one added
	# later makes its own, reserving WAL at once: an unreserved slot holds nothing until the seed's WAL stream
	# starts, and a checkpoint in between (another replica seeding) can recycle the segments it needs.
	# dbname=replication: what pg_basebackup itself sends, and what the passfile's line names.
	if ! made=$(as_postgres psql -X -q -w -d "$conninfo dbname=replication replication=true" \
			-c "CREATE_REPLICATION_SLOT $slot PHYSICAL RESERVE_WAL" 2>&1); then
		case "$made" in
			*"already exists"*) ;;
			*) log "creating slot $slot on the primary failed: $made"; exit 1 ;;
		esac
	fi
	log "seeding $PGDATA from $primary_host:$primary_port (slot $slot)"
	as_postgres pg_basebackup --pgdata="$staging" --wal-method=stream --slot="$slot" --write-recovery-conf \\
		--checkpoint=fast --no-password --dbname="$conninfo"
	if grep -q 'password=' "$staging/postgresql.auto.conf"; then
		log "primary_conninfo would hold a password; refusing to keep it in the data directory"
		rm -rf "$staging"
		exit 1
	fi
	if [ -d "$PGDATA" ]; then rmdir "$PGDATA"; fi
	mv "$staging" "$PGDATA"
	log "seeded; starting as a hot standby"
}}

# libpq would copy a PGPASSWORD into primary_conninfo; the passfile is the only password source.
unset PGPASSWORD
write_passfile
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	seed
fi
# The server and its children never need the password in their environment: the passfile has it.
unset {REPLICATION_PASSWORD_ENV}
exec {IMAGE_ENTRYPOINT} "$@"
"""


def server_command() -> list[str]:
    """The server's arguments: the image's entrypoint passes them to its temporary init server too."""
    return ["postgres", "-c", f"config_file={CONF_PATH}", "-c", f"hba_file={HBA_PATH}"]


def health_command(spec: PostgresSpec, replica: int | None = None) -> str:
    """Ready on TCP (the image's init server listens on the socket only, so the socket would pass too
    early); a replica must also be in recovery, asked over the trusted socket."""
    ready = shlex.join(
        ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(spec.port), "-U", spec.user, "-d", spec.database]
    )
    if replica is None:
        return ready
    query = shlex.join(
        ["psql", "-X", "-A", "-t", "-h", SOCKET_DIR, "-p", str(spec.port), "-U", SUPERUSER, "-d", "postgres",
         "-c", "SELECT pg_is_in_recovery()"]
    )
    return f'{ready} && [ "$({query})" = t ]'
