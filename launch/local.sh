#!/usr/bin/env bash
# Runs one hear_jax evaluation as P processes on this machine, the way a pod
# or cluster runs it on P hosts: for testing multi-host code without one.
#
#   launch/local.sh --processes 2 --devices-per-process 2 -- \
#       --config=configs/demo.py:tiny --workdir=/tmp/t
#
# Every process runs `python -m hear_jax.main <main args>` with
#   HEAR_JAX_COORDINATOR=127.0.0.1:<port>  HEAR_JAX_NUM_PROCESSES=P
#   HEAR_JAX_PROCESS_ID=i  JAX_PLATFORMS=cpu
#   XLA_FLAGS=--xla_force_host_platform_device_count=D
# (CPU devices; arrays cross processes through gloo). Each output line is
# prefixed with "[p<i>] ". If any process exits non-zero, the others are
# stopped and the script says which one failed and how, exiting with its
# status (128 + signal when it was killed).
#
# Options:
#   --processes P            number of processes (default 2)
#   --devices-per-process D  simulated CPU devices per process (default 1)
#   --port N                 coordinator port (default: a free one)
#   --python PATH            interpreter (default: .venv/bin/python if it
#                            exists, else python3)
set -euo pipefail

processes=2
devices=1
port=""
python=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --processes) processes="$2"; shift 2 ;;
    --devices-per-process) devices="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "launch/local.sh: unknown option $1 (main's arguments go after --)" >&2
       exit 2 ;;
  esac
done
for name in processes devices; do
  if ! [[ "${!name}" =~ ^[1-9][0-9]*$ ]]; then
    echo "launch/local.sh: --${name/devices/devices-per-process} must be a positive integer, got '${!name}'" >&2
    exit 2
  fi
done
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
if [[ -z "$port" ]]; then
  port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Give them a moment to exit, then make sure.
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && return
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 130' INT TERM

for ((i = 0; i < processes; i++)); do
  # Process substitution keeps $! the python process itself (not a pipe
  # stage), so its exit status is the one `wait` reports.
  HEAR_JAX_COORDINATOR="127.0.0.1:$port" HEAR_JAX_NUM_PROCESSES="$processes" \
  HEAR_JAX_PROCESS_ID="$i" JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1 \
  XLA_FLAGS="--xla_force_host_platform_device_count=$devices ${XLA_FLAGS:-}" \
    "$python" -m hear_jax.main "$@" \
    > >(sed -u -e '/^\[Gloo\] Rank /d' -e "s/^/[p$i] /") 2>&1 &
  pids+=($!)
  echo "launch/local.sh: process $i: pid $! (coordinator 127.0.0.1:$port, $devices devices)" >&2
done

declare -A index_of
for i in "${!pids[@]}"; do index_of[${pids[$i]}]=$i; done
remaining=$processes
while [[ $remaining -gt 0 ]]; do
  status=0
  # (bash's own "Killed ..." job notice is dropped: the line below says it)
  { wait -n -p done_pid "${pids[@]}"; } 2>/dev/null || status=$?
  remaining=$((remaining - 1))
  if [[ $status -ne 0 ]]; then
    i=${index_of[$done_pid]}
    if [[ $status -gt 128 ]]; then
      how="was killed by signal $((status - 128)) ($(kill -l $((status - 128)) 2>/dev/null || echo '?'))"
    else
      how="exited with status $status"
    fi
    echo "launch/local.sh: process $i (pid $done_pid) $how; stopping the other processes" >&2
    stop_all
    { wait; } 2>/dev/null || true
    exit "$status"
  fi
done
wait  # the output filters
echo "launch/local.sh: all $processes processes finished" >&2
