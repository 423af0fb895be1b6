#!/usr/bin/env bash
# Runs one hear_jax evaluation on every worker of a Cloud TPU VM pod slice
# (e.g. v4-32: 4 hosts x 4 chips), one process per host.
#
#   launch/tpu_pod.sh --tpu my-v4-32 --zone us-central2-b -- \
#       --config=configs/hear2021.py --workdir=/mnt/shared/runs/hear2021
#
# Runs on every worker, at once, through
#   gcloud compute tpus tpu-vm ssh <tpu> --zone <zone> --worker=all \
#       --command="cd <repo dir> && HEAR_JAX_DISTRIBUTED=auto <python> -m hear_jax.main ..."
# HEAR_JAX_DISTRIBUTED=auto makes hear_jax call jax.distributed.initialize()
# with no arguments: on a TPU pod JAX finds the coordinator (worker 0) and
# every process id from the TPU metadata itself.
#
# Each worker needs the repository at --repo-dir with its virtualenv
# (--setup-command runs an install command on every worker first), and
# --workdir / config.data_dir must be ONE directory every worker sees
# (Filestore NFS, or a GCS bucket mounted with gcsfuse): workers write their
# embedding shards there, worker 0 merges them and writes the results.
#
# Options:
#   --tpu NAME           TPU VM name (required)
#   --zone ZONE          its zone (required)
#   --project PROJECT    GCP project (default: gcloud's)
#   --repo-dir DIR       the checkout on the workers (default: ~/hear_jax)
#   --python PATH        interpreter on the workers, relative to --repo-dir
#                        (default: .venv/bin/python)
#   --setup-command CMD  first run CMD in the home directory of every worker,
#                        e.g. "git clone <url> hear_jax && cd hear_jax &&
#                        python3 -m venv .venv && .venv/bin/pip install -e .
#                        'jax[tpu]'"
#   --dry-run            print the gcloud commands instead of running them
set -euo pipefail

tpu="" zone="" project="" repo_dir="~/hear_jax" python=".venv/bin/python"
setup_command="" dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tpu) tpu="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --repo-dir) repo_dir="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --setup-command) setup_command="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "launch/tpu_pod.sh: unknown option $1 (main's arguments go after --)" >&2
       exit 2 ;;
  esac
done
if [[ -z "$tpu" || -z "$zone" ]]; then
  echo "launch/tpu_pod.sh: --tpu and --zone are required" >&2
  exit 2
fi
if [[ $# -eq 0 ]]; then
  echo "launch/tpu_pod.sh: give hear_jax.main's arguments after --" >&2
  exit 2
fi

gcloud_args=(--zone "$zone" --worker=all)
[[ -n "$project" ]] && gcloud_args+=(--project "$project")

run() {
  if [[ $dry_run == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

if [[ -n "$setup_command" ]]; then
  run gcloud compute tpus tpu-vm ssh "$tpu" "${gcloud_args[@]}" \
    --command="$setup_command"
fi

# The same command on every worker; its arguments quoted for the remote shell.
main_args=$(printf '%q ' "$@")
run gcloud compute tpus tpu-vm ssh "$tpu" "${gcloud_args[@]}" \
  --command="cd $repo_dir && HEAR_JAX_DISTRIBUTED=auto PYTHONUNBUFFERED=1 $python -m hear_jax.main $main_args"
