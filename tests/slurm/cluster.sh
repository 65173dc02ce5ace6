#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the tests (no systemd; run as root).
#
#   tests/slurm/cluster.sh install   apt-get the Debian packages (slurm 22.05, munge, slurmdbd, mariadb)
#   tests/slurm/cluster.sh start     write the configs, start munged, mariadbd, slurmdbd, slurmctld, slurmd
#   tests/slurm/cluster.sh stop      stop them again (state is kept under $RSDINO_SLURM_STATE)
#   tests/slurm/cluster.sh status    exit 0 when the cluster answers, 1 otherwise
#
# Settings (environment): RSDINO_SLURM_STATE (state folder, default /tmp/rsdino-slurm),
# RSDINO_SLURM_CPUS (CPUs declared for the node, default 8: more than the machine has, so several
# small jobs run at once), RSDINO_SLURM_PARTITION (default debug). The configs go to /etc/slurm/,
# where every client (sbatch, squeue, sacct, submitit, the Snakemake plugin) looks.
set -euo pipefail

STATE=${RSDINO_SLURM_STATE:-/tmp/rsdino-slurm}
CPUS=${RSDINO_SLURM_CPUS:-8}
PARTITION=${RSDINO_SLURM_PARTITION:-debug}
CLUSTER=rsdino
CONF_DIR=/etc/slurm
DB_SOCKET=/run/mysqld/mysqld.sock
DB_PASS=rsdino-test-only
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server-core mariadb-client-core)

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*" >&2; }

need_root() { [[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts daemons)"; }

# Wait up to $1 seconds for the command "${@:2}" to succeed.
wait_for() {
    local seconds=$1; shift
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# Is the daemon whose pid file is $1 running?
running() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

cmd_install() {
    need_root
    if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v munged >/dev/null \
        && command -v mariadbd >/dev/null && command -v sbatch >/dev/null; then
        log "packages already installed"
        return 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d: the packages' postinst scripts must not try to start services (no systemd here).
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get update -q || die "apt-get update failed (no package mirror reachable?)"
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" \
        || die "apt-get install ${PACKAGES[*]} failed"
}

write_configs() {
    local host node
    host=$(hostname -s)
    # The node as slurmd sees it, with more CPUs declared (allowed by config_overrides).
    node=$(slurmd -C | head -1 | sed -E \
        -e "s/CPUs=[0-9]+/CPUs=$CPUS/" -e "s/Boards=[0-9]+ //" -e "s/SocketsPerBoard=[0-9]+/Sockets=1/" \
        -e "s/CoresPerSocket=[0-9]+/CoresPerSocket=$CPUS/" -e "s/ThreadsPerCore=[0-9]+/ThreadsPerCore=1/")
    [[ $node == NodeName=* ]] || die "slurmd -C printed no node line: $node"
    mkdir -p "$CONF_DIR" "$STATE"/{ctld,slurmd,log}
    cat > "$CONF_DIR/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: a one-node test cluster (do not use in production).
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# Credentials expire after 10 s (default 120 s): a requeued job would otherwise wait two minutes.
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# No cgroups without systemd: track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# Accounting through slurmdbd: sacct (used by submitit and the Snakemake plugin) needs it.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$host
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
# Finished jobs stay visible to squeue/scontrol for 5 minutes.
MinJobAge=300
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    cat > "$CONF_DIR/slurmdbd.conf" <<EOF
# Written by tests/slurm/cluster.sh.
AuthType=auth/munge
DbdHost=$host
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$DB_PASS
EOF
    chmod 600 "$CONF_DIR/slurmdbd.conf"
}

start_munge() {
    if running /run/munge/munged.pid; then return 0; fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        if command -v mungekey >/dev/null; then mungekey --create --force; else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    runuser -u munge -- /usr/sbin/munged --force || die "munged did not start"
    wait_for 10 munge -n || die "munge does not answer"
}

# The accounting database and its user (idempotent).
create_database() {
    mariadb --socket="$DB_SOCKET" -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;" \
        || die "could not create the accounting database"
}

start_mariadb() {
    local datadir=$STATE/mysql
    if [[ -S $DB_SOCKET ]] && mariadb --socket="$DB_SOCKET" -e "SELECT 1" >/dev/null 2>&1; then
        create_database
        return 0
    fi
    # mariadb-server-core creates no mysql user: the server runs as root (a throw-away test database).
    mkdir -p /run/mysqld
    if [[ ! -d $datadir/mysql ]]; then
        mkdir -p "$datadir"
        mariadb-install-db --user=root --datadir="$datadir" --auth-root-authentication-method=socket \
            >"$STATE/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed: see $STATE/log/mariadb-install.log"
    fi
    # Unix socket only (no TCP port), started in the background.
    nohup mariadbd --user=root --datadir="$datadir" --socket="$DB_SOCKET" --skip-networking \
        --pid-file="$STATE/mariadbd.pid" --log-error="$STATE/log/mariadbd.log" \
        --innodb-buffer-pool-size=32M >/dev/null 2>&1 &
    wait_for 60 mariadb --socket="$DB_SOCKET" -e "SELECT 1" || die "mariadbd did not start: see $STATE/log/mariadbd.log"
    create_database
}

cmd_start() {
    need_root
    command -v slurmctld >/dev/null || die "SLURM is not installed: run '$0 install' first"
    write_configs
    start_munge
    start_mariadb
    if ! running "$STATE/slurmdbd.pid"; then
        slurmdbd || die "slurmdbd did not start: see $STATE/log/slurmdbd.log"
    fi
    wait_for 30 sacctmgr -n list cluster || die "slurmdbd does not answer: see $STATE/log/slurmdbd.log"
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster failed"
    fi
    if ! running "$STATE/slurmctld.pid"; then
        slurmctld || die "slurmctld did not start: see $STATE/log/slurmctld.log"
    fi
    if ! running "$STATE/slurmd.pid"; then
        slurmd || die "slurmd did not start: see $STATE/log/slurmd.log"
    fi
    wait_for 30 cmd_status || die "the node never became idle: see $STATE/log/"
    log "cluster $CLUSTER up (partition $PARTITION, $CPUS CPUs, state in $STATE)"
}

# Stop the daemon whose pid file is $1 and wait until it is gone.
stop_pid() {
    local pidfile=$1 pid
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
        wait_for 30 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

cmd_stop() {
    need_root
    # Cancel what is left so no job outlives the cluster.
    if command -v scancel >/dev/null && running "$STATE/slurmctld.pid"; then
        scancel --full --cluster="$CLUSTER" --user=root 2>/dev/null || true
    fi
    stop_pid "$STATE/slurmd.pid"
    stop_pid "$STATE/slurmctld.pid"
    stop_pid "$STATE/slurmdbd.pid"
    stop_pid "$STATE/mariadbd.pid"
    stop_pid /run/munge/munged.pid
    log "cluster stopped"
}

cmd_status() {
    sinfo -h -N -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)' && sacct -n -X -S now >/dev/null 2>&1
}

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) die "usage: $0 install|start|stop|status" ;;
esac
