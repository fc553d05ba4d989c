#!/usr/bin/env bash
# A throwaway single-node Slurm cluster (Debian's slurmctld/slurmd 22.05 and munge) in DIR, on
# private ports and a private munge socket, for the Slurm tests and for trying the recipes:
#
#   scripts/slurm-cluster.sh start DIR [CPUS]   # prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/slurm-cluster.sh stop DIR
#
# Runs as root (slurmd must, to start jobs as their user). Nothing outside DIR is touched; the
# daemons' logs are DIR/*.log. `start` returns once the node is idle and takes jobs.
set -euo pipefail
cmd=${1:?usage: $0 start|stop DIR [CPUS]}
D=$(mkdir -p "${2:?usage: $0 start|stop DIR [CPUS]}" && realpath "$2")
CPUS=${3:-$(nproc)}

stop() {
  # End every job first (with slurmd gone, their step daemons would be orphaned).
  if [ -f "$D/slurmctld.pid" ]; then
    SLURM_CONF=$D/slurm.conf scancel --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 1 100); do
      [ -z "$(SLURM_CONF=$D/slurm.conf squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
  for p in slurmd slurmctld munged; do
    [ -f "$D/$p.pid" ] && kill -TERM "$(cat "$D/$p.pid")" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do
    alive=0
    for p in slurmd slurmctld munged; do
      [ -f "$D/$p.pid" ] && kill -0 "$(cat "$D/$p.pid")" 2>/dev/null && alive=1
    done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  rm -f "$D"/*.pid
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

case $cmd in
stop) stop; exit 0 ;;
start) ;;
*) echo "usage: $0 start|stop DIR [CPUS]" >&2; exit 2 ;;
esac

[ "$(id -u)" = 0 ] || { echo "the test cluster runs slurmd, which must run as root" >&2; exit 1; }
for b in munged mungekey slurmctld slurmd sbatch; do
  command -v "$b" >/dev/null || PATH=$PATH:/usr/sbin
  command -v "$b" >/dev/null || { echo "$b is not installed: run make setup (it installs slurmctld, slurmd, slurm-client and munge)" >&2; exit 1; }
done
mkdir -p "$D/munge" "$D/state" "$D/spool"
chmod 700 "$D/munge"
[ -f "$D/munge/munge.key" ] || mungekey --create --keyfile "$D/munge/munge.key" --bits 1024
chmod 600 "$D/munge/munge.key"
munged --force --socket "$D/munge/munge.socket" --key-file "$D/munge/munge.key" \
  --pid-file "$D/munged.pid" --log-file "$D/munged.log" --seed-file "$D/munge/seed"

MEM=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)
cat >"$D/slurm.conf" <<EOF
ClusterName=ausweep-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.socket
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait=5
DefMemPerCPU=1024
SchedulerParameters=sched_interval=1
MessageTimeout=5
NodeName=node1 NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$D/slurm.conf
slurmctld -i -f "$SLURM_CONF"
slurmd -N node1 -f "$SLURM_CONF"
for _ in $(seq 1 150); do
  state=$(sinfo -h -N -o %t 2>/dev/null | head -1)
  [ "$state" = idle ] && { echo "export SLURM_CONF=$SLURM_CONF"; exit 0; }
  sleep 0.2
done
echo "the Slurm node did not become idle (last state: ${state:-none}); logs:" >&2
tail -n 5 "$D/slurmctld.log" "$D/slurmd.log" >&2 || true
stop
exit 1
