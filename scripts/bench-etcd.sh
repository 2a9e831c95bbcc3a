#!/usr/bin/env bash
# bench-etcd.sh: the etcd side of `tradelog bench --only etcd`, the replicated-write baseline.
#
# Starts a private, throw-away 3-member etcd cluster on 127.0.0.1 (free ports, one data
# directory per member in a fresh temporary directory, etcd's default durability: every
# Raft entry fsynced by each member before it counts towards the majority), waits until
# every member is healthy and one of them leads, prints one machine-readable line
#
#   ETCD_READY endpoints=http://127.0.0.1:A,http://127.0.0.1:B,http://127.0.0.1:C leader=http://127.0.0.1:B version=3.4.23 dir=... fs=ext4 ...
#
# and then keeps the cluster up until its standard input is closed (or it gets SIGINT /
# SIGTERM). `tradelog bench` holds the pipe open while it drives the cluster over gRPC and
# closes it when done. Then the members are stopped (SIGTERM, then SIGKILL after 10 s: only
# the processes this script started, by their pids) and the directory is removed (trap on
# EXIT). On any failure it prints `ETCD_SKIP reason="..."` and exits non-zero.
#
# Members listen on 127.0.0.1 only (clients and peers). Leftovers of an earlier run that was
# killed with SIGKILL (a directory whose owner is gone) are stopped and removed first: each
# member's pid is checked against its command line, which names that directory. Installs the
# Debian packages `etcd-server` and `etcd-client` (etcdctl) if missing (as root), without
# letting the package start a system-wide etcd of its own.
#
# Server settings that differ from etcd's defaults: --max-txn-ops (default 128 here 1024,
# so that one Txn can carry a batch of transfers) and --quota-backend-bytes (4 GiB).
#
# Usage: scripts/bench-etcd.sh [--base-dir DIR] [--max-txn-ops N] [--members N]
#        (manual use: run it, use the printed endpoints, press Ctrl-D or Ctrl-C to stop)
set -euo pipefail
exec 2>&1

BASE="${TMPDIR:-/tmp}"
MAX_TXN_OPS=1024
MEMBERS=3
PREFIX="tradelog-etcd-bench"

say() { echo "bench-etcd: $*"; }
skip() {
    echo "ETCD_SKIP reason=\"$*\""
    exit 3
}

while [ $# -gt 0 ]; do
    case "$1" in
    --base-dir) BASE="$2"; shift 2 ;;
    --max-txn-ops) MAX_TXN_OPS="$2"; shift 2 ;;
    --members) MEMBERS="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) skip "unknown argument: $1" ;;
    esac
done
for v in MAX_TXN_OPS MEMBERS; do
    case "${!v}" in
    '' | *[!0-9]*) skip "$v must be a positive integer, got '${!v}'" ;;
    esac
    [ "${!v}" -gt 0 ] || skip "$v must be positive"
done
[ "$MEMBERS" -le 7 ] || skip "at most 7 members"

WORK=""

# Stops the members of a cluster directory: SIGTERM, up to 10 s, then SIGKILL. Only pids
# recorded in DIR/mN.pid whose command line names DIR (so never a recycled pid).
stop_members() { # DIR
    local dir="$1" f pid pids=() i
    for f in "$dir"/m*.pid; do
        [ -f "$f" ] || continue
        pid="$(cat "$f" 2>/dev/null || true)"
        [ -n "$pid" ] || continue
        if kill -0 "$pid" 2>/dev/null &&
            tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    [ "${#pids[@]}" -gt 0 ] || return 0
    for i in $(seq 1 100); do
        local alive=0
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ "$alive" -eq 0 ] && return 0
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null &&
            tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        stop_members "$WORK"
        # Reap the children (their exit status does not matter any more).
        wait 2>/dev/null
        rm -rf -- "$WORK"
        say "stopped etcd and removed $WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- binaries -------------------------------------------------------------------------
find_etcd() { command -v etcd >/dev/null && command -v etcdctl >/dev/null; }
if ! find_etcd; then
    [ "$(id -u)" -eq 0 ] || skip "etcd and etcdctl not found and not root, cannot install (apt-get install etcd-server etcd-client)"
    command -v apt-get >/dev/null || skip "etcd not found and no apt-get to install it"
    say "installing etcd (apt-get install -y etcd-server etcd-client)"
    export DEBIAN_FRONTEND=noninteractive
    # Do not let the package start a system-wide etcd (on 2379/2380) of its own: the
    # standard policy-rc.d answer "action forbidden", only while installing and only if
    # the machine has no policy of its own.
    POLICY=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        POLICY=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$POLICY"
        chmod 755 "$POLICY"
    fi
    apt_install() {
        apt-get install -y -q -o Dpkg::Options::=--force-confold etcd-server etcd-client >/tmp/$PREFIX-apt.log 2>&1
    }
    ok=1
    if ! apt_install; then
        apt-get update -q >/tmp/$PREFIX-apt.log 2>&1 || true
        apt_install || ok=0
    fi
    [ -n "$POLICY" ] && rm -f -- "$POLICY"
    [ "$ok" -eq 1 ] || skip "apt-get install etcd-server etcd-client failed (see /tmp/$PREFIX-apt.log)"
    find_etcd || skip "etcd installed but etcd or etcdctl is not on PATH"
fi
VERSION="$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: *//p' | head -n 1)"
VERSION="${VERSION:-unknown}"

# ---- leftovers of earlier runs killed before their trap ran ------------------------------
for old in "$BASE"/$PREFIX.* /tmp/$PREFIX.*; do
    [ -d "$old" ] && [ -f "$old/owner.pid" ] || continue
    owner="$(cat "$old/owner.pid" 2>/dev/null || true)"
    if [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$owner/cmdline" 2>/dev/null | grep -q bench-etcd; then
        continue # another run is alive
    fi
    say "removing leftovers of an earlier run: $old"
    stop_members "$old"
    rm -rf -- "$old"
done

# ---- a private directory -------------------------------------------------------------------
mkdir -p "$BASE" 2>/dev/null || BASE=/tmp
WORK="$(mktemp -d "$BASE/$PREFIX.XXXXXX")" || skip "cannot create a directory in $BASE"
echo $$ >"$WORK/owner.pid"
FS="$(df -PT "$WORK" 2>/dev/null | awk 'NR==2 {print $2}')"
DEV="$(df -PT "$WORK" 2>/dev/null | awk 'NR==2 {print $1}')"
FS="${FS:-unknown}"
say "etcd $VERSION, $MEMBERS members in $WORK ($FS on ${DEV:-?})"
case "$FS" in tmpfs | ramfs) say "WARNING: $WORK is in memory ($FS): fsync costs nothing there" ;; esac

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    while :; do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_in_use "$p" || {
            echo "$p"
            return 0
        }
    done
}

# ---- start the members -----------------------------------------------------------------------
ENDPOINTS=""
start_cluster() { # ATTEMPT -> 0 when every member is healthy
    local attempt="$1" i cluster="" token="$PREFIX-$$-$attempt" client peer
    local -a clients peers
    for i in $(seq 1 "$MEMBERS"); do
        clients[i]="$(free_port)"
        peers[i]="$(free_port)"
        cluster="${cluster:+$cluster,}m$i=http://127.0.0.1:${peers[i]}"
    done
    ENDPOINTS=""
    for i in $(seq 1 "$MEMBERS"); do
        client="http://127.0.0.1:${clients[i]}"
        peer="http://127.0.0.1:${peers[i]}"
        ENDPOINTS="${ENDPOINTS:+$ENDPOINTS,}$client"
        rm -rf -- "$WORK/m$i"
        mkdir -p "$WORK/m$i"
        chmod 700 "$WORK/m$i"
        etcd --name "m$i" --data-dir "$WORK/m$i/data" \
            --listen-client-urls "$client" --advertise-client-urls "$client" \
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token "$token" \
            --max-txn-ops "$MAX_TXN_OPS" --quota-backend-bytes $((4 * 1024 * 1024 * 1024)) \
            --log-outputs "$WORK/m$i/etcd.log" --logger zap \
            </dev/null >"$WORK/m$i/stdout.log" 2>&1 &
        echo $! >"$WORK/m$i.pid"
    done
    say "attempt $attempt: members on $ENDPOINTS, waiting until healthy"
    for i in $(seq 1 300); do
        for f in "$WORK"/m*.pid; do
            kill -0 "$(cat "$f")" 2>/dev/null || {
                say "member ${f##*/} exited:"
                tail -n 5 "${f%.pid}/etcd.log" "${f%.pid}/stdout.log" 2>/dev/null | sed 's/^/  /'
                return 1
            }
        done
        if ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" --command-timeout=2s \
            endpoint health >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    say "not healthy after 30 s"
    return 1
}

STARTED=""
for attempt in 1 2 3; do
    if start_cluster "$attempt"; then
        STARTED=1
        break
    fi
    stop_members "$WORK"
    wait 2>/dev/null || true
    rm -f -- "$WORK"/m*.pid
done
[ -n "$STARTED" ] || skip "etcd did not start (see the member logs above)"

ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" endpoint status -w table | sed 's/^/  /'
# Every member must listen on loopback only.
for f in "$WORK"/m*.pid; do
    pid="$(cat "$f")"
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -oE 'https?://[^ ,]+' | grep -vq '^http://127\.0\.0\.1:' &&
        skip "member ${f##*/} has a non-loopback URL"
done
# The leader's client URL (`endpoint status -w simple`: URL, id, version, db size, is leader, ...).
LEADER="$(ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" endpoint status -w simple 2>/dev/null |
    awk -F', ' '$5 == "true" {print $1}' | head -n 1 || true)"
echo "ETCD_READY endpoints=$ENDPOINTS leader=${LEADER:-unknown} version=$VERSION dir=$WORK fs=$FS members=$MEMBERS max_txn_ops=$MAX_TXN_OPS"

# ---- hold until stdin closes -------------------------------------------------------------------
# `read` returns non-zero at end of input; a member dying meanwhile is reported at exit.
while IFS= read -r _; do :; done
for f in "$WORK"/m*.pid; do
    kill -0 "$(cat "$f")" 2>/dev/null || say "WARNING: member ${f##*/} had exited before the end"
done
