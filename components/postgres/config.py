"""PostgreSQL files rendered from the spec: server config, client authentication, and the entrypoint that owns
every start (first init, credentials and slots reconciled, replica seeding) with nothing but the server's binaries.

Why our own entrypoint rather than the official image's: the image creates roles only on an empty data
directory, so a retained volume under new passwords (destroy then up, a replaced password resource) keeps
the old ones, and an interrupted first init leaves a data directory it never completes. Ours initialises
atomically (initdb into a staging directory, renamed into place when done) and reconciles the roles, their
passwords, the database and the replicas' slots at every start, before the server listens on TCP. It needs
only `initdb`, `pg_ctl`, `postgres` and `psql` (on PATH, or Debian's /usr/lib/postgresql/<major>/bin), so the
official images, their mirrors and images built from Debian's packages all run the same code."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from components.postgres.backup import PGBACKREST_CONF, BackupPaths, archive_settings, restore_options
from components.shell import drop_privileges
from model.spec import PostgresSpec

# Oldest major version these renderers know every emitted setting for (max_slot_wal_keep_size is 13+).
MIN_VERSION = 13
# The bootstrap superuser (initdb --username), named like the OS user that owns the server; it is reachable
# over the unix socket only.
SUPERUSER = "postgres"

CONFIG_DIR = "/etc/postgresql"
CONF_PATH = f"{CONFIG_DIR}/postgresql.conf"
HBA_PATH = f"{CONFIG_DIR}/pg_hba.conf"
# One entrypoint for the primary and each replica (each instance gets its own rendering).
ENTRYPOINT_PATH = "/usr/local/bin/banyan-postgres-entrypoint.sh"
# The image's (and Debian's) compiled-in socket directory, writable by the postgres user.
SOCKET_DIR = "/var/run/postgresql"
# Outside the data directory: written from the environment on every start, never copied by a base backup.
REPLICATION_PASSFILE = f"{SOCKET_DIR}/.replication.pgpass"

APP_PASSWORD_ENV = "POSTGRES_APP_PASSWORD"
REPLICATION_PASSWORD_ENV = "POSTGRES_REPLICATION_PASSWORD"

# The temporary, socket-only server that reconciliation runs against: how long pg_ctl waits for it.
TEMP_SERVER_TIMEOUT_S = 120

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


def backup_paths(spec: PostgresSpec) -> BackupPaths:
    """Where the primary's volume holds what the backup container shares (socket, archive queue)."""
    layout = data_layout(spec.version)
    return BackupPaths(mount=layout.mount, pgdata=layout.pgdata)


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
        f"unix_socket_directories = {_literal(_socket_dirs(spec))}",
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
        *(archive_settings(spec, backup_paths(spec)) if spec.backup is not None else []),
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


def _socket_dirs(spec: PostgresSpec) -> str:
    """The image's socket directory; with backups, a second one on the data volume the backup container shares."""
    if spec.backup is None:
        return SOCKET_DIR
    return f"{SOCKET_DIR}, {backup_paths(spec).socket_dir}"


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


def render_reconcile_sql(spec: PostgresSpec) -> str:
    """What the primary must hold, made true at every start (idempotent): the application role and the
    replication role with the passwords of this deployment, the application database, one physical slot per
    replica (reserved at once), and no inactive slot left by a replica that the spec no longer has.

    Passwords come from the environment into psql variables (psql runs the backquoted command with its own
    environment), so they appear in no file, no command line, and, with log_statement 'none' and
    log_min_error_statement raised for this session, in no server log either.
    """
    _check_roles(spec)
    app, repl, db = _literal(spec.user), _literal(spec.replication_user), _literal(spec.database)
    wanted = [slot_name(r) for r in spec.replica_names]
    # Our slots are named after the replicas (postgres_replica_<n>); a user's own slots are never touched.
    ours = "^" + re.escape(slot_name(f"{spec.name}-replica-")) + "[0-9]+$"
    keep = "ARRAY[" + ", ".join(_literal(w) for w in wanted) + "]::text[]" if wanted else "ARRAY[]::text[]"
    slots = "\n".join(
        # Reserved at once (second argument): the slot holds WAL from now on, not only from its first use,
        # so a checkpoint during another replica's seed cannot recycle segments this one still streams.
        f"SELECT pg_create_physical_replication_slot({_literal(w)}, true) "
        f"WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = {_literal(w)});"
        for w in wanted
    )
    return f"""SET log_min_error_statement = 'panic';
\\set app_password `printf '%s' "${APP_PASSWORD_ENV}"`
\\set replication_password `printf '%s' "${REPLICATION_PASSWORD_ENV}"`
SELECT format('CREATE ROLE %I', {app}) WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {app})
\\gexec
ALTER ROLE {_ident(spec.user)} WITH LOGIN NOSUPERUSER NOREPLICATION PASSWORD :'app_password';
SELECT format('CREATE ROLE %I', {repl}) WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {repl})
\\gexec
ALTER ROLE {_ident(spec.replication_user)} WITH LOGIN NOSUPERUSER REPLICATION PASSWORD :'replication_password';
\\unset app_password
\\unset replication_password
SELECT format('CREATE DATABASE %I OWNER %I', {db}, {app})
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {db})
\\gexec
{slots}
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
  WHERE slot_name ~ {_literal(ours)} AND NOT active AND slot_name <> ALL({keep});
"""


def _shell_values(values: dict[str, str]) -> str:
    return "\n".join(f"{key}={shlex.quote(value)}" for key, value in values.items())


def render_entrypoint(spec: PostgresSpec, replica: int | None = None) -> str:
    """The entrypoint of the primary (replica=None) or of replica `replica` (1-based).

    Primary: on a data directory without PG_VERSION, initdb into a staging directory and rename it into
    place; then, at every start, a socket-only temporary server, the reconciliation SQL, a fast stop, and
    the server itself. Replica: on an empty data directory, wait for the primary and seed from it with
    pg_basebackup through its own slot (also renamed into place when complete), then start as a hot standby.

    The standby's password stays out of the data directory: `pg_basebackup -R` writes into
    postgresql.auto.conf every connection option libpq used, a password too when it came from PGPASSWORD.
    Here the password comes from a passfile instead, so primary_conninfo holds only the passfile's path; the
    file is rewritten from the environment on every start, so a rotated password takes effect at once.
    """
    _check_roles(spec)
    instance = instance_name(spec, replica)
    values = {"role": "primary" if replica is None else "replica", "instance": instance,
              "version": str(spec.version), "superuser": SUPERUSER, "socket_dir": SOCKET_DIR}
    if replica is not None:
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
        values |= {
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
    if spec.backup is not None:
        paths = backup_paths(spec)
        values |= {"pgbackrest_conf": PGBACKREST_CONF, "backup_socket_dir": paths.socket_dir, "spool": paths.spool}
    if spec.restore is not None:
        values |= {"restore_stanza": spec.restore.source_server, "restore_id": spec.restore.restore_id,
                   "restore_target": spec.restore.target_time or "latest",
                   "over_existing": "yes" if spec.restore.over_existing_data else ""}
    required = [("PGDATA", "must name the data directory"), ("PGPORT", "must name the port")]
    if replica is None:
        required.append((APP_PASSWORD_ENV, "must hold the password of the application role"))
    required.append((REPLICATION_PASSWORD_ENV, "must hold the password of the replication role"))
    checks = "\n".join(f': "${{{name}:?{why}}}"' for name, why in required)
    common = f"""#!/bin/sh
# banyan's PostgreSQL entrypoint ({values["role"]} {instance}), rendered from the stack spec. It owns every
# start and needs only the server's binaries: see components/postgres/config.py.
set -eu

{_shell_values(values)}
{checks}

log() {{ printf '%s: %s\\n' "$instance" "$*" >&2; }}

# initdb, pg_ctl and postgres: on PATH in the official images, in Debian's packages under
# /usr/lib/postgresql/<major>/bin (psql and pg_isready are on PATH in both).
if ! command -v initdb >/dev/null 2>&1 && [ -x "/usr/lib/postgresql/$version/bin/initdb" ]; then
	PATH="/usr/lib/postgresql/$version/bin:$PATH"
	export PATH
fi
for tool in initdb pg_ctl postgres psql{" pgbackrest" if spec.backup is not None else ""}; do
	command -v "$tool" >/dev/null 2>&1 || {{ log "no $tool of PostgreSQL $version on PATH"; exit 1; }}
done

# The server and its files belong to the postgres user; a container starts as root.
{drop_privileges("postgres", log="log")}as_postgres() {{ $drop "$@"; }}

own() {{
	if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$@"; fi
}}

# Beside PGDATA on the same volume: renamed into place only once complete, so an interrupted init or
# seed never looks like a data directory.
staging="$(dirname "$PGDATA")/$role.partial"
mkdir -p "$(dirname "$PGDATA")" "$socket_dir"
own "$(dirname "$PGDATA")" "$socket_dir"
{_backup_dirs(spec)}chmod 3775 "$socket_dir" 2>/dev/null || :
if [ -d "$PGDATA" ] && [ "$(id -u)" = 0 ]; then
	find "$PGDATA" ! -user postgres -exec chown postgres:postgres {{}} +
fi

refuse_foreign_files() {{
	if [ -d "$PGDATA" ] && [ -n "$(ls -A "$PGDATA")" ]; then
		log "$PGDATA holds files but no PG_VERSION; refusing to initialise over them"
		exit 1
	fi
}}

move_into_place() {{
	if [ -d "$PGDATA" ]; then rmdir "$PGDATA"; fi
	mv "$staging" "$PGDATA"
}}

# The server's arguments (`postgres -c config_file=... -c hba_file=...`): the temporary server takes them too.
if [ "${{1:-}}" = postgres ]; then shift; fi
"""
    if replica is None:
        return common + f"""
init() {{
	refuse_foreign_files
	rm -rf "$staging"
	log "initialising $PGDATA"
	# C.UTF-8 exists in every libc the images use; the data checksums catch silent corruption. The
	# pg_hba.conf initdb writes is never read (hba_file names ours), and rejects TCP should it ever be.
	as_postgres initdb --pgdata="$staging" --username="$superuser" --data-checksums --encoding=UTF8 \\
		--locale=C.UTF-8 --auth-local=trust --auth-host=reject >&2
	move_into_place
}}

stop_temporary() {{ as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >&2 || :; }}

# Roles, passwords, the database and the slots, made true before the server listens on TCP: a health check
# that authenticates as the application therefore proves all of it.
reconcile() {{
	trap stop_temporary EXIT
	as_postgres pg_ctl -D "$PGDATA" -w -t {TEMP_SERVER_TIMEOUT_S} -o "$* -c listen_addresses=''" start >&2
	as_postgres psql -X -q -v ON_ERROR_STOP=1 --no-psqlrc --no-password -h "$socket_dir" -p "$PGPORT" \\
		--username "$superuser" --dbname postgres >/dev/null <<'SQL'
{render_reconcile_sql(spec)}SQL
	trap - EXIT
	as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >&2
}}

{_primary_start(spec)}
reconcile "$@"
log "reconciled; starting"
unset {REPLICATION_PASSWORD_ENV}
exec $drop postgres "$@"
"""
    return common + f"""
ready_attempts={READY_ATTEMPTS}

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
	refuse_foreign_files
	wait_for_primary
	rm -rf "$staging"
	# The primary reconciles the slots of the replicas in its spec at every start; a replica seeding before
	# that (or added since) makes its own, reserving WAL at once: an unreserved slot holds nothing until the
	# seed's WAL stream starts, and a checkpoint in between (another replica seeding) can recycle the segments
	# it needs. dbname=replication: what pg_basebackup itself sends, and what the passfile's line names.
	if ! made=$(as_postgres psql -X -q -w -d "$conninfo dbname=replication replication=true" \\
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
	move_into_place
	log "seeded; starting as a hot standby"
}}

# libpq would copy a PGPASSWORD into primary_conninfo; the passfile is the only password source.
unset PGPASSWORD
write_passfile
{_replica_start(spec)}
# The server and its children never need the password in their environment: the passfile has it.
unset {REPLICATION_PASSWORD_ENV}
exec $drop postgres "$@"
"""


def _backup_dirs(spec: PostgresSpec) -> str:
    """With backups: the socket directory the backup container shares, and pgBackRest's archive queue."""
    if spec.backup is None:
        return ""
    return """# Shared with the backup container (its socket), and pgBackRest's asynchronous archive queue.
mkdir -p "$backup_socket_dir" "$spool"
own "$backup_socket_dir" "$spool"
chmod 0700 "$spool"
"""


def _primary_start(spec: PostgresSpec) -> str:
    """Initialise an empty data directory; with a restore, fill it from the backup repository instead."""
    if spec.restore is None:
        return """if [ ! -s "$PGDATA/PG_VERSION" ]; then
	init
fi"""
    target = shlex.join(restore_options(spec.restore))
    return f"""# A restore from the backup repository instead of initdb: into an empty data directory, or
# (over_existing_data) over one that this restore has not filled yet, moved aside beside it first, never deleted.
marker="$(dirname "$PGDATA")/restored-$restore_id"
if [ -n "$over_existing" ] && [ -s "$PGDATA/PG_VERSION" ] && [ ! -e "$marker" ]; then
	aside="$(dirname "$PGDATA")/pgdata.before-restore-$restore_id"
	if [ -e "$aside" ]; then
		log "$aside exists; move it away before restoring again"
		exit 1
	fi
	log "moving the existing data aside to $aside before restoring (over_existing_data)"
	mv "$PGDATA" "$aside"
fi
if [ -s "$PGDATA/PG_VERSION" ] && [ ! -e "$marker" ]; then
	log "$PGDATA holds data this restore did not write; refusing to start on it as if restored. Set"
	log "banyan:postgres.restore.over_existing_data true to replace it, or banyan:postgres.restore.enabled false"
	exit 1
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	refuse_foreign_files
	rm -rf "$staging"
	mkdir -m 0700 "$staging"
	own "$staging"
	log "restoring $PGDATA from stanza $restore_stanza (target: $restore_target)"
	restore_command="pgbackrest --config=$pgbackrest_conf --stanza=$restore_stanza --archive-async=n"
	restore_command="$restore_command archive-get %f \\"%p\\""
	as_postgres pgbackrest --config="$pgbackrest_conf" --stanza="$restore_stanza" --pg1-path="$staging" \\
		{target} \\
		--recovery-option="restore_command=$restore_command" \\
		restore >&2
	# Written before the rename: from here on this data directory is this restore's (an interrupted recovery
	# resumes below), and no later start mistakes it for data the restore did not write.
	touch "$marker"
	own "$marker"
	move_into_place
fi
# Recovery runs to its target before anything else (interrupted, it resumes here): without hot standby the server
# accepts a connection only once it has promoted itself, which is what pg_ctl waits for.
if [ -e "$PGDATA/recovery.signal" ]; then
	log "recovering to $restore_target"
	as_postgres pg_ctl -D "$PGDATA" -w -t {TEMP_SERVER_TIMEOUT_S} \\
		-o "$* -c listen_addresses='' -c hot_standby=off" start >&2
	# pg_ctl counts a standby as started; connections are accepted once recovery has ended and it promoted.
	until [ "$(as_postgres psql -X -A -t -q -w -h "$socket_dir" -p "$PGPORT" -U "$superuser" -d postgres \\
			-c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do
		if ! as_postgres pg_ctl -D "$PGDATA" status >/dev/null 2>&1; then
			log "the server stopped while recovering"
			exit 1
		fi
		sleep 1
	done
	as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >&2
	log "recovered; the server is on a new timeline"
fi"""


def _replica_start(spec: PostgresSpec) -> str:
    """Seed an empty data directory; after a restore over existing data, drop the replica's old copy first."""
    seed = """if [ ! -s "$PGDATA/PG_VERSION" ]; then
	seed
fi"""
    if spec.restore is None or not spec.restore.over_existing_data:
        return seed
    return """# The primary was restored over its data (a new timeline): a copy of the old one cannot follow it.
marker="$(dirname "$PGDATA")/restored-$restore_id"
if [ -s "$PGDATA/PG_VERSION" ] && [ ! -e "$marker" ]; then
	log "the primary was restored (over_existing_data): dropping this replica's copy to seed again"
	rm -rf "$PGDATA"
fi
""" + seed + """
if [ ! -e "$marker" ]; then
	touch "$marker"
	own "$marker"
fi"""


def server_command() -> list[str]:
    """The server's arguments: the entrypoint passes them to its temporary server too."""
    return ["postgres", "-c", f"config_file={CONF_PATH}", "-c", f"hba_file={HBA_PATH}"]


def health_command(spec: PostgresSpec, replica: int | None = None) -> str:
    """An authenticated query as the application, over TCP, on its database: it passes only once the
    entrypoint has reconciled the role, its password and the database and the server listens. A replica
    must also be in recovery (a hot standby, not a promoted or stand-alone server)."""
    query = "SELECT pg_is_in_recovery()" if replica is not None else "SELECT 1"
    expected = "t" if replica is not None else "1"
    psql = shlex.join(["psql", "-X", "-A", "-t", "-w", "-h", "127.0.0.1", "-p", str(spec.port), "-U", spec.user,
                       "-d", spec.database, "-c", query])
    return f'[ "$(PGPASSWORD="${APP_PASSWORD_ENV}" PGCONNECT_TIMEOUT=3 {psql})" = {expected} ]'
