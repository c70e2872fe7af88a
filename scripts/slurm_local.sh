#!/usr/bin/env bash
# slurm_local.sh: a one-machine Slurm cluster for tests and demos.
#
#   scripts/slurm_local.sh start  STATE_DIR   # prints: export SLURM_CONF=...
#   scripts/slurm_local.sh status STATE_DIR
#   scripts/slurm_local.sh stop   STATE_DIR
#
# `start` runs munged (as user munge), slurmctld and slurmd without systemd,
# from a slurm.conf generated into STATE_DIR. Every Slurm state, spool, log
# and pid file lives under STATE_DIR. The cluster gets a munged of its own
# (AuthInfo=socket=...), so clusters in two state directories never share or
# stop each other's munged; its socket, pid, log and seed live in
# /run/munge/local-HASH/, because munged must own that directory and cannot
# reach into a root-only STATE_DIR. start picks the first free pair of ports
# from 6817 up. It waits until the node is idle and prints the
# `export SLURM_CONF=...` line on stdout (everything else goes to stderr), so
# `eval "$(scripts/slurm_local.sh start DIR)"` works. A failed start ends the
# daemons it launched and exits non-zero with the tails of the logs.
#
# `stop` cancels this cluster's jobs, then ends exactly the daemons that
# `start` launched, by the PIDs recorded in STATE_DIR/pids/, never by name.
# start after stop, with the same STATE_DIR, works.
#
# Must run as root (slurmd launches jobs as their submitting user).
# Environment knobs: SLURM_LOCAL_CTLD_PORT and SLURM_LOCAL_SLURMD_PORT (fix
# the ports), SLURM_LOCAL_MEMORY_MB (4096), SLURM_LOCAL_TIMEOUT (60 s to idle).
#
# Conf lines that matter here (measured, see docs/DESIGN section 7):
# SlurmUser=root, proctrack/linuxproc, task/none, select/cons_tres, no
# accounting, MailProg=/bin/true, and AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10 (without it a
# requeued job waits about two minutes before it can start again).

set -euo pipefail

readonly PROG=${0##*/}
readonly MUNGE_RUN=/run/munge
readonly MUNGE_KEY=/etc/munge/munge.key
readonly LOCK=/run/lock/slurm_local.lock

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# Daemons launched by this invocation, ended again if `start` fails halfway.
STARTED=()
die() {
    say "error: $*"
    local i
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        stop_pid "${STARTED[i]}"
    done
    exit 1
}

usage() {
    echo "usage: $PROG start|stop|status STATE_DIR" >&2
    exit 2
}

# The state directory's layout, fixed once.
set_paths() {
    STATE=$(cd "$1" && pwd -P)
    CONF=$STATE/slurm.conf
    PIDS=$STATE/pids
    LOGS=$STATE/log
    HOST=$(hostname -s)
    MUNGE_DIR=$MUNGE_RUN/local-$(printf '%s' "$STATE" | md5sum | cut -c1-12)
    MUNGE_SOCKET=$MUNGE_DIR/munge.socket
}

# pid_alive PID NAME: true if PID runs (and is no zombie) and its command
# name is NAME, which guards against a recorded PID reused by another process.
pid_alive() {
    local pid=$1 name=$2 comm stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ $comm == "$name" && ${stat:0:1} != Z ]]
}

# recorded_alive NAME: the daemon NAME recorded in STATE_DIR/pids still runs.
recorded_alive() {
    [[ -s $PIDS/$1.pid ]] && pid_alive "$(cat "$PIDS/$1.pid")" "$1"
}

# Tail of every log we know of, for failure messages.
dump_logs() {
    local f
    for f in "$LOGS"/slurmctld.log "$LOGS"/slurmd.log "$MUNGE_DIR"/munged.log; do
        [[ -s $f ]] || continue
        echo "----- tail of $f -----" >&2
        tail -n 25 "$f" >&2
    done
}

munge_works() {
    munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1
}

start_munge() {
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    install -d -o munge -g munge -m 0755 "$MUNGE_DIR"
    rm -f "$PIDS/munged.pid"
    if [[ ! -s $MUNGE_KEY ]]; then
        say "creating munge key $MUNGE_KEY"
        install -d -o munge -g munge -m 0700 "${MUNGE_KEY%/*}"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$MUNGE_KEY"
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        fi
        chown munge:munge "$MUNGE_KEY"
        chmod 0400 "$MUNGE_KEY"
    fi
    # A stale socket or pid file from a killed munged makes it refuse to start.
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$MUNGE_DIR/munged.pid"
    setpriv --reuid=munge --regid=munge --init-groups \
        munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" \
        --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" 9>&- \
        || { dump_logs; die "munged failed to start"; }
    local i
    for ((i = 0; i < 50; i++)); do
        munge_works && [[ -s $MUNGE_DIR/munged.pid ]] && break
        sleep 0.1
    done
    if [[ -s $MUNGE_DIR/munged.pid ]] && pid_alive "$(cat "$MUNGE_DIR/munged.pid")" munged; then
        cp "$MUNGE_DIR/munged.pid" "$PIDS/munged.pid"
        STARTED+=(munged)
    fi
    munge_works || { dump_logs; die "munged started but does not answer on $MUNGE_SOCKET"; }
    say "munged running (pid $(cat "$PIDS/munged.pid"))"
}

# port_free PORT: nothing listens on TCP PORT.
port_free() {
    [[ -z $(ss -Htln "sport = :$1" 2>/dev/null) ]]
}

write_conf() {
    local ctld_port=${SLURM_LOCAL_CTLD_PORT:-} slurmd_port=${SLURM_LOCAL_SLURMD_PORT:-} p
    if [[ -z $ctld_port || -z $slurmd_port ]]; then
        for ((p = 6817; p < 7017; p += 2)); do
            port_free "$p" && port_free $((p + 1)) && break
        done
        : "${ctld_port:=$p}" "${slurmd_port:=$((p + 1))}"
    fi
    local mem=${SLURM_LOCAL_MEMORY_MB:-4096}
    cat >"$CONF" <<EOF
# Generated by $PROG for a one-machine cluster; all state under $STATE.
ClusterName=ncsnlocal
SlurmctldHost=$HOST
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.txt
MailProg=/bin/true
MpiDefault=pmix
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
KillWait=10
MinJobAge=300
NodeName=$HOST CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

# start_daemon NAME: run the Slurm daemon NAME (it forks and writes its pid
# file) and record its pid.
start_daemon() {
    local name=$1 pidfile=$STATE/run/$1.pid i
    rm -f "$pidfile" "$PIDS/$name.pid"
    "$name" -f "$CONF" 9>&- || { dump_logs; die "$name failed to start"; }
    for ((i = 0; i < 100; i++)); do
        [[ -s $pidfile ]] && pid_alive "$(cat "$pidfile")" "$name" && break
        sleep 0.1
    done
    if ! { [[ -s $pidfile ]] && pid_alive "$(cat "$pidfile")" "$name"; }; then
        dump_logs
        die "$name exited right after start"
    fi
    cp "$pidfile" "$PIDS/$name.pid"
    STARTED+=("$name")
    say "$name running (pid $(cat "$PIDS/$name.pid"))"
}

wait_idle() {
    local timeout=${SLURM_LOCAL_TIMEOUT:-60} t0=$SECONDS state=""
    while ((SECONDS - t0 < timeout)); do
        state=$(SLURM_CONF=$CONF sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -n 1 || true)
        case $state in
            idle) say "node $HOST is idle"; return 0 ;;
            drain* | down*)
                # A node left drained by an earlier run in this state dir.
                SLURM_CONF=$CONF scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
        esac
        for name in slurmctld slurmd; do
            recorded_alive "$name" || { dump_logs; die "$name died while waiting for the node"; }
        done
        sleep 0.5
    done
    dump_logs
    die "node $HOST not idle after ${timeout}s (last sinfo state: '${state:-none}')"
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "must run as root"
    mkdir -p "$1"
    set_paths "$1"
    mkdir -p "$STATE/state" "$STATE/spool" "$STATE/run" "$PIDS" "$LOGS"
    local name
    for name in munged slurmctld slurmd; do
        if recorded_alive "$name"; then
            say "error: $name from an earlier start is still running (pid $(cat "$PIDS/$name.pid")); run '$PROG stop $STATE' first"
            exit 1
        fi
    done
    # Two starts at once would pick the same free ports: one at a time, until
    # both daemons listen (the lock goes with this script; daemons get no fd 9).
    exec 9>"$LOCK"
    flock -w 120 9 || die "another $PROG start holds $LOCK for more than 120 s"
    start_munge
    write_conf
    start_daemon slurmctld
    start_daemon slurmd
    wait_idle
    echo "export SLURM_CONF=$CONF"
}

# stop_pid NAME: end the daemon recorded as NAME, TERM first, KILL after 15 s.
stop_pid() {
    local name=$1 file=$PIDS/$1.pid pid i
    [[ -s $file ]] || return 0
    pid=$(cat "$file")
    if pid_alive "$pid" "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            pid_alive "$pid" "$name" || break
            sleep 0.1
        done
        if pid_alive "$pid" "$name"; then
            say "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $name (pid $pid)"
    fi
    rm -f "$file"
}

cmd_stop() {
    [[ -d $1 ]] || die "no state directory $1"
    set_paths "$1"
    if recorded_alive slurmctld; then
        local jobs i
        jobs=$(SLURM_CONF=$CONF squeue -h -o %i 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            say "cancelling jobs: ${jobs//$'\n'/ }"
            # shellcheck disable=SC2086
            SLURM_CONF=$CONF scancel $jobs 2>/dev/null || true
            for ((i = 0; i < 40; i++)); do
                [[ -z $(SLURM_CONF=$CONF squeue -h -o %i 2>/dev/null) ]] && break
                sleep 0.5
            done
        fi
    fi
    stop_pid slurmd
    stop_pid slurmctld
    stop_pid munged
    if [[ -d $MUNGE_DIR ]]; then
        cp -f "$MUNGE_DIR/munged.log" "$LOGS/munged.log" 2>/dev/null || true
        rm -rf "$MUNGE_DIR"
    fi
}

cmd_status() {
    [[ -d $1 ]] || die "no state directory $1"
    set_paths "$1"
    local name pid rc=0
    for name in munged slurmctld slurmd; do
        if [[ -s $PIDS/$name.pid ]]; then
            pid=$(cat "$PIDS/$name.pid")
            if pid_alive "$pid" "$name"; then
                echo "$name: running (pid $pid)"
            else
                echo "$name: not running (recorded pid $pid)"; rc=1
            fi
        else
            echo "$name: not started"; rc=1
        fi
    done
    if ((rc == 0)); then
        echo "export SLURM_CONF=$CONF"
        SLURM_CONF=$CONF sinfo -N || rc=1
        SLURM_CONF=$CONF squeue || rc=1
    fi
    return $rc
}

(($# == 2)) || usage
case $1 in
    start) cmd_start "$2" ;;
    stop) cmd_stop "$2" ;;
    status) cmd_status "$2" ;;
    *) usage ;;
esac
