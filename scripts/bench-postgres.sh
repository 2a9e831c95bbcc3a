#!/usr/bin/env bash
# bench-postgres.sh: the PostgreSQL side of `tradelog bench --only durable,postgres`.
#
# Runs the same transfer workload as tradelog's durable benchmark against a private,
# throw-away PostgreSQL cluster with the same durability (fsync=on, synchronous_commit=on):
#
#   BEGIN;
#   UPDATE accounts SET balance = balance - 1 WHERE id = :d AND balance >= 1;
#   UPDATE accounts SET balance = balance + 1 WHERE id = :c;
#   INSERT INTO transfers (debit, credit, amount) VALUES (:d, :c, 1);
#   COMMIT;
#
# in three modes, each for --duration seconds with --clients connections (pgbench):
#   single   closed loop, each client runs one transfer transaction at a time;
#   batched  closed loop, each client sends --batch transfer transactions at once in one
#            pgbench pipeline (each is still its own transaction with its own commit) and
#            waits for all of them: the analogue of tradelog's batched mode;
#   open     open loop at 50% of the single-mode throughput (pgbench --rate: requests are
#            scheduled in advance and latency counts from the scheduled start, so it is
#            corrected for coordinated omission).
#
# For each mode it prints one machine-readable line (parsed by `tradelog bench`):
#   PG_RESULT mode=single clients=64 batch=1 requests=... transfers_per_s=... requests_per_s=... avg_ms=... p50_ms=... p99_ms=... p999_ms=... failed=...
# and on any failure `PG_SKIP reason="..."` and a non-zero exit.
#
# Safety: the server listens on 127.0.0.1 only (no Unix socket, password authentication),
# on a free port; it runs as the `postgres` user (PostgreSQL refuses root) in a fresh
# temporary directory; on exit, success or failure, it is stopped and the directory
# removed (trap on EXIT). Leftovers of an earlier run that was killed with SIGKILL are
# stopped and removed on the next run. Installs the `postgresql` Debian package if the
# binaries are missing (as root).
#
# Usage: scripts/bench-postgres.sh [--accounts N] [--clients C] [--duration SECONDS]
#                                   [--batch K] [--threads J] [--base-dir DIR]
#                                   [--modes single,open,batched]
set -euo pipefail
exec 2>&1

ACCOUNTS=100000
CLIENTS=64
DURATION=10
BATCH=100
THREADS=2
BASE="${TMPDIR:-/tmp}"
MODES="single,open,batched"
PREFIX="tradelog-pg-bench"

say() { echo "bench-postgres: $*"; }
skip() {
    echo "PG_SKIP reason=\"$*\""
    exit 3
}

while [ $# -gt 0 ]; do
    case "$1" in
    --accounts) ACCOUNTS="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --base-dir) BASE="$2"; shift 2 ;;
    --modes) MODES="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) skip "unknown argument: $1" ;;
    esac
done
for v in ACCOUNTS CLIENTS DURATION BATCH THREADS; do
    case "${!v}" in
    '' | *[!0-9]*) skip "$v must be a positive integer, got '${!v}'" ;;
    esac
    [ "${!v}" -gt 0 ] || skip "$v must be positive"
done
[ "$ACCOUNTS" -ge 2 ] || skip "need at least 2 accounts"
[ "$THREADS" -le "$CLIENTS" ] || THREADS="$CLIENTS"

WORK=""
OS_USER=""
BINDIR=""

# Runs a command as the (non-root) user that owns the cluster.
as_pg() {
    if [ -n "$OS_USER" ]; then
        runuser -u "$OS_USER" -- "$@"
    else
        "$@"
    fi
}

stop_cluster() { # DATA_DIR
    local data="$1" pid
    [ -f "$data/postmaster.pid" ] || return 0
    pid="$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)"
    if [ -n "$BINDIR" ]; then
        as_pg "$BINDIR/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            as_pg "$BINDIR/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    # Last resort: the postmaster of this directory (checked by its command line).
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$data"; then
        kill -9 "$pid" 2>/dev/null || true
    fi
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        stop_cluster "$WORK/data"
        rm -rf -- "$WORK"
        say "stopped PostgreSQL and removed $WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'echo "PG_SKIP reason=\"command failed (line $LINENO): ${BASH_COMMAND//\"/}\""' ERR

# ---- binaries -------------------------------------------------------------------------
find_bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] &&
            [ -x "$d/pgbench" ] && [ -x "$d/psql" ]; then
            echo "$d"
            return 0
        fi
    done
    local i p
    i="$(command -v initdb || true)"
    p="$(command -v pgbench || true)"
    if [ -n "$i" ] && [ -n "$p" ]; then
        d="$(dirname "$(readlink -f "$i")")"
        if [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && [ -x "$d/pgbench" ] && [ -x "$d/psql" ]; then
            echo "$d"
            return 0
        fi
    fi
    return 1
}

if ! BINDIR="$(find_bindir)"; then
    [ "$(id -u)" -eq 0 ] || skip "PostgreSQL binaries (initdb, pg_ctl, pgbench) not found and not root, cannot install"
    command -v apt-get >/dev/null || skip "PostgreSQL binaries not found and no apt-get to install them"
    say "installing PostgreSQL (apt-get install -y postgresql)"
    # Do not let the package create and start a system-wide cluster of its own.
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_install() {
        apt-get install -y -q -o Dpkg::Options::=--force-confold postgresql postgresql-contrib >/tmp/$PREFIX-apt.log 2>&1
    }
    if ! apt_install; then
        apt-get update -q >/tmp/$PREFIX-apt.log 2>&1 || true
        apt_install || skip "apt-get install postgresql failed (see /tmp/$PREFIX-apt.log)"
    fi
    BINDIR="$(find_bindir)" || skip "PostgreSQL installed but its binaries were not found under /usr/lib/postgresql/*/bin"
fi
VERSION="$("$BINDIR/postgres" --version | awk '{print $3}')"

# ---- the user that runs the cluster ------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
    if id postgres >/dev/null 2>&1; then
        OS_USER=postgres
    else
        OS_USER="$PREFIX"
        id "$OS_USER" >/dev/null 2>&1 ||
            useradd --system --no-create-home --shell /usr/sbin/nologin "$OS_USER" ||
            skip "cannot create a non-root user to run PostgreSQL"
    fi
    command -v runuser >/dev/null || skip "running as root and runuser is missing"
fi

# ---- leftovers of earlier runs killed before their trap ran ------------------------------
for old in "$BASE"/$PREFIX.* /tmp/$PREFIX.*; do
    [ -d "$old" ] && [ -f "$old/owner.pid" ] || continue
    owner="$(cat "$old/owner.pid" 2>/dev/null || true)"
    if [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$owner/cmdline" 2>/dev/null | grep -q bench-postgres; then
        continue # another run is alive
    fi
    say "removing leftovers of an earlier run: $old"
    stop_cluster "$old/data"
    rm -rf -- "$old"
done

# ---- a private directory, owned by that user ---------------------------------------------
make_work() { # BASE
    local w
    mkdir -p "$1" 2>/dev/null || return 1
    w="$(mktemp -d "$1/$PREFIX.XXXXXX")" || return 1
    echo $$ >"$w/owner.pid"
    if [ -n "$OS_USER" ]; then
        chown -R "$OS_USER" "$w"
        chmod 700 "$w"
        if ! runuser -u "$OS_USER" -- test -w "$w"; then
            rm -rf -- "$w"
            return 1
        fi
    fi
    echo "$w"
}
WORK="$(make_work "$BASE")" || {
    [ "$BASE" != /tmp ] && say "$BASE is not usable by user $OS_USER, using /tmp"
    WORK="$(make_work /tmp)"
} || skip "cannot create a private directory for the cluster"
FS="$(df -PT "$WORK" 2>/dev/null | awk 'NR==2 {print $2}')"
DEV="$(df -PT "$WORK" 2>/dev/null | awk 'NR==2 {print $1}')"
FS="${FS:-unknown}"
say "PostgreSQL $VERSION from $BINDIR, cluster in $WORK ($FS on ${DEV:-?}), run as ${OS_USER:-$(id -un)}"
case "$FS" in tmpfs | ramfs) say "WARNING: $WORK is in memory ($FS): fsync costs nothing there" ;; esac

# ---- init and start ------------------------------------------------------------------------
PW="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
as_pg sh -c "umask 077; printf '%s\n' '$PW' > '$WORK/pw'"
as_pg "$BINDIR/initdb" -D "$WORK/data" -U bench --auth=scram-sha-256 --pwfile="$WORK/pw" \
    -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1 || {
    cat "$WORK/initdb.log"
    skip "initdb failed"
}
cat >>"$WORK/data/postgresql.conf" <<EOF

# tradelog bench-postgres.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = on
synchronous_commit = on
full_page_writes = on
track_wal_io_timing = on
max_connections = $((CLIENTS + 10))
EOF

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

PORT=""
for attempt in 1 2 3 4 5; do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    port_in_use "$p" && continue
    if as_pg "$BINDIR/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w -t 60 \
        -o "-c port=$p" start >/dev/null 2>&1; then
        PORT="$p"
        break
    fi
    say "start on port $p failed (attempt $attempt), retrying"
    stop_cluster "$WORK/data"
done
if [ -z "$PORT" ]; then
    tail -n 20 "$WORK/server.log" 2>/dev/null || true
    skip "PostgreSQL did not start"
fi

as_pg sh -c "umask 077; printf '127.0.0.1:%s:*:bench:%s\n' '$PORT' '$PW' > '$WORK/pgpass'"
pg() { as_pg env PGPASSFILE="$WORK/pgpass" PGHOST=127.0.0.1 PGPORT="$PORT" PGUSER=bench PGDATABASE=postgres "$@"; }
psql_q() { pg "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

LISTEN="$(psql_q -At -c "SHOW listen_addresses")"
[ "$LISTEN" = "127.0.0.1" ] || skip "listen_addresses is '$LISTEN', expected 127.0.0.1"
say "listening on 127.0.0.1:$PORT only; fsync=$(psql_q -At -c 'SHOW fsync') synchronous_commit=$(psql_q -At -c 'SHOW synchronous_commit') wal_sync_method=$(psql_q -At -c 'SHOW wal_sync_method')"

# ---- schema and data -----------------------------------------------------------------------
t0=$(date +%s.%N)
psql_q <<SQL
CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));
CREATE TABLE transfers (id bigserial PRIMARY KEY, debit bigint, credit bigint, amount bigint,
                        created_at timestamptz DEFAULT now());
INSERT INTO accounts SELECT g, 1000000 FROM generate_series(1, $ACCOUNTS) g;
VACUUM ANALYZE accounts;
CHECKPOINT;
SQL
say "loaded $ACCOUNTS accounts in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"

# ---- pgbench scripts -----------------------------------------------------------------------
# c is uniform over the accounts other than d: 1 + (d + r) mod N with r in 0..N-2.
mkdir_pg() { as_pg mkdir -p "$@"; }
mkdir_pg "$WORK/scripts" "$WORK/logs"
{
    echo '\set d random(1, :naccounts)'
    echo '\set c 1 + (:d + random(0, :naccounts - 2)) % :naccounts'
    echo 'BEGIN;'
    echo 'UPDATE accounts SET balance = balance - 1 WHERE id = :d AND balance >= 1;'
    echo 'UPDATE accounts SET balance = balance + 1 WHERE id = :c;'
    echo 'INSERT INTO transfers (debit, credit, amount) VALUES (:d, :c, 1);'
    echo 'COMMIT;'
} | as_pg sh -c "cat > '$WORK/scripts/single.sql'"
{
    for i in $(seq 1 "$BATCH"); do
        echo "\\set d$i random(1, :naccounts)"
        echo "\\set c$i 1 + (:d$i + random(0, :naccounts - 2)) % :naccounts"
    done
    echo '\startpipeline'
    for i in $(seq 1 "$BATCH"); do
        echo 'BEGIN;'
        echo "UPDATE accounts SET balance = balance - 1 WHERE id = :d$i AND balance >= 1;"
        echo "UPDATE accounts SET balance = balance + 1 WHERE id = :c$i;"
        echo "INSERT INTO transfers (debit, credit, amount) VALUES (:d$i, :c$i, 1);"
        echo 'COMMIT;'
    done
    echo '\endpipeline'
} | as_pg sh -c "cat > '$WORK/scripts/batched.sql'"

# Latency summary of pgbench --log files: column 3 is the transaction's latency in us
# (with --rate it counts from the scheduled start); failed or skipped ones are not numbers.
summarize() { # LOG_PREFIX -> "n avg_ms p50_ms p99_ms p999_ms max_ms"
    cat "$1".* 2>/dev/null | awk '$3 ~ /^[0-9]+$/ {print $3}' | sort -n |
        awk '{ v[NR] = $1; s += $1 }
             function q(p,  i) { i = int(p * NR); if (i < p * NR) i++; if (i < 1) i = 1; return v[i] / 1000 }
             END { if (NR == 0) { print "0 0 0 0 0 0"; exit }
                   printf "%d %.3f %.3f %.3f %.3f %.3f\n", NR, s / NR / 1000, q(0.5), q(0.99), q(0.999), v[NR] / 1000 }'
}

# WAL fsyncs, their total time (ms, track_wal_io_timing) and commits so far.
wal_stats() {
    psql_q -At -c "SELECT w.wal_sync, w.wal_sync_time, d.xact_commit FROM pg_stat_wal w,
                          pg_stat_database d WHERE d.datname = 'postgres'"
}

SINGLE_TPS=""
run_mode() { # MODE SCRIPT BATCH EXTRA_ARGS...
    local mode="$1" script="$2" batch="$3"
    shift 3
    local out="$WORK/pgbench-$mode.out" tps n avg p50 p99 p999 max failed w0 w1 groups
    w0="$(wal_stats)"
    say "pgbench $mode: $CLIENTS clients, $DURATION s, $batch transfer(s) per request $*"
    pg "$BINDIR/pgbench" -n -M prepared -c "$CLIENTS" -j "$THREADS" -T "$DURATION" \
        -D naccounts="$ACCOUNTS" -f "$WORK/scripts/$script" \
        --log --log-prefix="$WORK/logs/$mode" "$@" >"$out" 2>&1 || {
        sed 's/^/  pgbench | /' "$out" | tail -n 30
        skip "pgbench ($mode) failed"
    }
    grep -E '^(number of|latency|tps|initial|rate limit|statement|  *[0-9.]+ +[0-9]+ +[0-9]+ +(BEGIN|UPDATE|INSERT|COMMIT)|  *[0-9.]+ +(BEGIN|UPDATE|INSERT|COMMIT))' "$out" |
        sed 's/^/  pgbench | /' || true
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -n 1)"
    failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out" | head -n 1)"
    read -r n avg p50 p99 p999 max <<<"$(summarize "$WORK/logs/$mode")"
    w1="$(wal_stats)"
    # Group commit: commits per WAL fsync and the average WAL fsync time.
    groups="$(awk -v a="$w0" -v b="$w1" 'BEGIN {
        split(a, x, "|"); split(b, y, "|"); s = y[1] - x[1]; c = y[3] - x[3];
        if (s <= 0) { print "commits_per_fsync=0 fsyncs_per_s=0 fsync_avg_ms=0"; exit }
        printf "commits_per_fsync=%.1f fsyncs=%d fsync_avg_ms=%.3f", c / s, s, (y[2] - x[2]) / s }')"
    [ -n "$tps" ] || skip "pgbench ($mode) printed no tps"
    echo "PG_RESULT mode=$mode clients=$CLIENTS batch=$batch duration_s=$DURATION requests=$n" \
        "requests_per_s=$tps transfers_per_s=$(awk -v t="$tps" -v b="$batch" 'BEGIN {printf "%.1f", t * b}')" \
        "avg_ms=$avg p50_ms=$p50 p99_ms=$p99 p999_ms=$p999 max_ms=$max failed=${failed:-0} $groups" \
        "fs=$FS version=$VERSION"
    [ "$mode" = single ] && SINGLE_TPS="$tps"
    return 0
}

for m in ${MODES//,/ }; do
    case "$m" in
    single) run_mode single single.sql 1 -r --max-tries=10 ;;
    batched) run_mode batched batched.sql "$BATCH" ;;
    open)
        if [ -z "$SINGLE_TPS" ]; then
            run_mode single single.sql 1 -r --max-tries=10
        fi
        rate="$(awk -v t="$SINGLE_TPS" 'BEGIN {r = int(t / 2); if (r < 1) r = 1; print r}')"
        run_mode open single.sql 1 --rate="$rate" --max-tries=10
        ;;
    *) skip "unknown mode $m" ;;
    esac
done

moved="$(psql_q -At -c "SELECT count(*) || ' transfers recorded, total balance ' || (SELECT sum(balance) FROM accounts) FROM transfers")"
say "$moved (expected total $((ACCOUNTS * 1000000)))"
