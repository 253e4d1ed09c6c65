#!/usr/bin/env bash
# A one-node SLURM cluster with job accounting, on this machine, to run the Dora grids for real (CI and
# workstations). Debian/Ubuntu packages (Slurm 22.05, munge, MariaDB), plain daemons (no systemd), as root.
#
#   scripts/slurm_cluster.sh install   # apt-get the packages (once; skipped when present)
#   scripts/slurm_cluster.sh start     # install if needed, write the configs, start the daemons, wait until idle
#   eval "$(scripts/slurm_cluster.sh env)"   # SLURM_CONF for sbatch/squeue/sacct and `dora grid`
#   scripts/slurm_cluster.sh status    # daemons, node and queue
#   scripts/slurm_cluster.sh stop      # cancel every job, stop the daemons by their pid files, wait for them
#
# Every step is idempotent. All state (configs, pid files, logs, spool, the accounting database) lives in
# $MMD_SLURM_DIR (default /tmp/mmd-slurm); ports $MMD_SLURM_PORT..+3 (default 16817: slurmctld, slurmd,
# slurmdbd, MariaDB), so a system SLURM, munge or MariaDB on the same machine is left alone. The node is named
# after `hostname -s`, has MMD_SLURM_CPUS CPUs (default: all) and ~90% of the memory, one partition named
# $MMD_SLURM_PARTITION (default `debug`, audiocraft's default team partition). Jobs that can never fit are refused by sbatch (EnforcePartLimits).
# Packages: slurmctld slurmd slurm-client slurmdbd munge mariadb-server-core mariadb-client-core (~12 MB).
set -euo pipefail

DIR=${MMD_SLURM_DIR:-/tmp/mmd-slurm}
PORT=${MMD_SLURM_PORT:-16817}
CPUS=${MMD_SLURM_CPUS:-$(nproc)}
PARTITION=${MMD_SLURM_PARTITION:-debug}
HOST=$(hostname -s)
CONF=$DIR/etc/slurm.conf
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server-core mariadb-client-core)  # no full MariaDB server
DB_PASS=mmd-slurm-local   # the database listens on 127.0.0.1 only and holds nothing but job records

say() { echo "slurm_cluster: $*"; }
die() { echo "slurm_cluster: ERROR: $*" >&2; exit 1; }
pidfile() { echo "$DIR/run/$1.pid"; }

running() {  # running DAEMON: its pid file names a live process
    local pid
    pid=$(cat "$(pidfile "$1")" 2>/dev/null) || return 1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll COMMAND every 0.2 s
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
    say "$what"
}

log_tail() { tail -n 20 "$DIR/log/$1.log" 2>/dev/null | sed 's/^/    /' >&2 || true; }

need_root() { [[ $(id -u) == 0 ]] || die "$1 needs root (daemons run as root/munge; packages come from apt)."; }

cmd_install() {
    local missing=() cmd
    for cmd in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd mariadb-install-db mariadb; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    if ((${#missing[@]} == 0)); then
        say "packages present"
        return
    fi
    need_root "installing ${missing[*]}"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install ${PACKAGES[*]} yourself."
    # Debian's maintainer scripts would start the system services: deny that while installing (policy-rc.d),
    # unless the machine already has such a policy.
    local policy=/usr/sbin/policy-rc.d ours=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
    fi
    say "installing ${PACKAGES[*]} (apt-get, about a minute)"
    local start=$SECONDS rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" \
        >"/tmp/mmd-slurm-apt.log" 2>&1 || rc=$?
    if ((rc != 0)); then  # a stale package list: update once and retry
        apt-get update -q >>"/tmp/mmd-slurm-apt.log" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" \
                >>"/tmp/mmd-slurm-apt.log" 2>&1 && rc=0 || rc=$?
    fi
    ((ours)) && rm -f "$policy"
    ((rc == 0)) || { tail -n 20 /tmp/mmd-slurm-apt.log >&2; die "apt-get install failed (log: /tmp/mmd-slurm-apt.log)"; }
    say "installed in $((SECONDS - start)) s"
}

write_configs() {
    mkdir -p "$DIR"/{etc,run,log,state,spool,munge,mysql}
    chmod 755 "$DIR"
    local mem_mb
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat >"$CONF" <<EOF
# Written by scripts/slurm_cluster.sh: a one-node cluster with accounting (slurmdbd + MariaDB).
ClusterName=mmd
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups in containers: track job processes through /proc, no task binding, no usage sampling.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
# Connections to slurmdbd take their munge socket from here, not from AuthInfo.
AccountingStoragePass=$DIR/munge/munge.socket
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# Impossible requests (too many CPUs, memory, GPUs) fail at sbatch instead of pending forever.
EnforcePartLimits=ALL
DefMemPerCPU=1024
ReturnToService=2
SchedulerParameters=sched_interval=2
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/etc/slurmdbd.conf" <<EOF
# Written by scripts/slurm_cluster.sh
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=root
PidFile=$(pidfile slurmdbd)
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 3))
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"   # slurmdbd refuses a world-readable config with a password
}

start_munged() {
    running munged && return
    # munged runs as the munge user; its socket directory must be its own, traversable by all (clients).
    chown munge:munge "$DIR/munge"
    chmod 755 "$DIR/munge"
    [[ -r /etc/munge/munge.key ]] || die "no /etc/munge/munge.key (the munge package creates it)"
    runuser -u munge -- munged --socket="$DIR/munge/munge.socket" --pid-file="$DIR/munge/munged.pid" \
        --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" >"$DIR/log/munged.out" 2>&1 \
        || { cat "$DIR/munge/munged.log" >&2 2>/dev/null; die "munged did not start"; }
    cp "$DIR/munge/munged.pid" "$(pidfile munged)"
    wait_for 10 "munged answers" bash -c "munge -n -S '$DIR/munge/munge.socket' | unmunge -S '$DIR/munge/munge.socket'" \
        || die "munged does not answer (log: $DIR/munge/munged.log)"
}

start_mariadbd() {
    running mariadbd && return
    local sock=$DIR/mysql/mysqld.sock
    if [[ ! -d $DIR/mysql/data/mysql ]]; then
        mariadb-install-db --user=root --datadir="$DIR/mysql/data" --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 \
            || { tail -n 20 "$DIR/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    # mariadbd does not daemonize: its own session, so it outlives this script and its caller's pipes.
    setsid mariadbd --no-defaults --user=root --datadir="$DIR/mysql/data" --socket="$sock" --port=$((PORT + 3)) \
        --bind-address=127.0.0.1 --pid-file="$(pidfile mariadbd)" --log-error="$DIR/log/mariadbd.log" \
        --innodb-buffer-pool-size=64M --skip-name-resolve >/dev/null 2>&1 &
    wait_for 60 "mariadbd answers" mariadb --no-defaults --socket="$sock" -e "SELECT 1" \
        || { log_tail mariadbd; die "mariadbd did not start (log: $DIR/log/mariadbd.log)"; }
    mariadb --no-defaults --socket="$sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || die "could not create the accounting database user"
}

start_slurm_daemon() {  # start_slurm_daemon NAME READY-COMMAND...
    local name=$1
    shift
    running "$name" && return
    case $name in
        slurmdbd) SLURM_CONF=$CONF slurmdbd >"$DIR/log/$name.out" 2>&1 ;;
        slurmctld) slurmctld -f "$CONF" >"$DIR/log/$name.out" 2>&1 ;;
        slurmd) slurmd -f "$CONF" >"$DIR/log/$name.out" 2>&1 ;;
    esac || { cat "$DIR/log/$name.out" >&2; log_tail "$name"; die "$name did not start (log: $DIR/log/$name.log)"; }
    wait_for 30 "$name answers" "$@" || { log_tail "$name"; die "$name does not answer (log: $DIR/log/$name.log)"; }
}

node_idle() { [[ $(SLURM_CONF=$CONF sinfo -h -N -o %t 2>/dev/null) == idle* ]]; }

cmd_start() {
    cmd_install
    need_root "starting the cluster"
    local start=$SECONDS
    write_configs
    start_munged
    start_mariadbd
    start_slurm_daemon slurmdbd env SLURM_CONF="$CONF" sacctmgr -n list cluster
    start_slurm_daemon slurmctld env SLURM_CONF="$CONF" scontrol ping
    start_slurm_daemon slurmd env SLURM_CONF="$CONF" scontrol show node "$HOST"
    if ! wait_for 30 "node $HOST is idle" node_idle; then
        SLURM_CONF=$CONF scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        wait_for 10 "node $HOST is idle" node_idle || { log_tail slurmctld; die "node $HOST is not idle: $(SLURM_CONF=$CONF sinfo -N)"; }
    fi
    say "started in $((SECONDS - start)) s; use: export SLURM_CONF=$CONF"
}

stop_daemons() {  # stop_daemons NAME...: SIGTERM by pid file, wait up to 30 s, then SIGKILL
    local name pids=() names=() i
    for name in "$@"; do
        running "$name" || continue
        names+=("$name")
        pids+=("$(cat "$(pidfile "$name")")")
        kill "${pids[-1]}" 2>/dev/null || true
    done
    local deadline=$((SECONDS + 30))
    for i in "${!pids[@]}"; do
        while kill -0 "${pids[i]}" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if kill -0 "${pids[i]}" 2>/dev/null; then
            say "${names[i]} (${pids[i]}) ignores SIGTERM after 30 s: SIGKILL"
            kill -9 "${pids[i]}" 2>/dev/null || true
        fi
        say "stopped ${names[i]} (${pids[i]})"
    done
}

cmd_stop() {
    [[ -d $DIR/run ]] || { say "nothing to stop ($DIR/run absent)"; return; }
    if running slurmctld; then  # jobs first: their processes outlive slurmd otherwise
        # every job, whatever its partition (the one this cluster was started with may differ from today's env)
        SLURM_CONF=$CONF squeue -h -o %i 2>/dev/null | xargs -r env SLURM_CONF="$CONF" scancel --quiet || true
        wait_for 30 "job queue is empty" bash -c "[[ -z \$(SLURM_CONF='$CONF' squeue -h -o %i) ]]" \
            || say "jobs still listed after 30 s: $(SLURM_CONF=$CONF squeue -h 2>&1 | head -5)"
    fi
    # Two waves, each daemon stopping in parallel (each takes ~2 s): slurm first (slurmctld hands its last
    # records to slurmdbd), then accounting and authentication.
    stop_daemons slurmd slurmctld
    stop_daemons slurmdbd mariadbd munged
    rm -f "$DIR"/run/*.pid
    say "stopped (state kept in $DIR)"
}

cmd_status() {
    local name rc=0
    for name in munged mariadbd slurmdbd slurmctld slurmd; do
        if running "$name"; then echo "$name: running (pid $(cat "$(pidfile "$name")"))"; else echo "$name: stopped"; rc=1; fi
    done
    if ((rc == 0)); then
        SLURM_CONF=$CONF sinfo -N
        SLURM_CONF=$CONF squeue
    fi
    return $rc
}

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) die "usage: $0 {install|start|stop|status|env}   (state in \$MMD_SLURM_DIR=$DIR)" ;;
esac
