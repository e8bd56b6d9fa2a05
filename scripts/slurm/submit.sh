#!/usr/bin/env bash
# Submits an mmcurate run to Slurm as four chained jobs: measure (an array of N tasks), decide
# (one task, afterok measure), write (an array of N tasks, afterok decide) and commit (one task,
# afterok write), each running scripts/slurm/curate.sbatch. With --decide-tasks M the decide
# phase's semantic search is spread over M partition tasks first: task 0 alone (it makes the
# shared part, CLIP included, once), then tasks 1..M-1 as an array, then the decide task merges
# their pairs. A failed job cancels the ones after
# it (--kill-on-invalid-dep); submitting the same command again resumes: mmcurate skips the
# work units a previous attempt finished. It schedules nothing itself: Slurm does.
#
#   scripts/slurm/submit.sh CONFIG --tasks N [OPTIONS] [-- MMCURATE_RUN_ARGS...]
#
# Prints one line per job, `PHASE JOBID`, on stdout. See README.md, "Running on Slurm".
set -euo pipefail

usage() {
  cat >&2 <<'USAGE'
usage: scripts/slurm/submit.sh CONFIG --tasks N [OPTIONS] [-- MMCURATE_RUN_ARGS...]
  --tasks N             measure tasks (array 0..N-1); each measures 1/N of the work units
  --write-tasks M       write tasks (default: N)
  --decide-tasks M      spread the decide phase's semantic search over M partition tasks
                        (default 1: the decide task searches alone)
  --cpus-per-task C     CPUs of each task; mmcurate runs C threads (default: Slurm's default)
  --mem SIZE            memory of each measure/write task (sbatch --mem, e.g. 8G)
  --decide-mem SIZE     memory of the decide task (default: --mem)
  --time LIMIT          time limit of each job (sbatch --time)
  --partition NAME      partition (sbatch --partition)
  --account NAME        account (sbatch --account)
  --max-parallel K      at most K array tasks at once (--array=0-N%K)
  --log-dir DIR         where job logs go (default: ./slurm-logs)
  --mmcurate PATH       the mmcurate binary the jobs run (default: mmcurate on the PATH)
  --sbatch-arg ARG      one more argument for every sbatch call (repeatable)
  --dry-run             print the sbatch commands instead of running them
Arguments after `--` go to every `mmcurate run` (e.g. --set run.output=s3://bucket/out).
USAGE
  exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
sbatch_script="$here/curate.sbatch"

[ "$#" -ge 1 ] || usage
config=$1
shift
case "$config" in -*) usage ;; esac
[ -f "$config" ] || { echo "submit.sh: config $config does not exist" >&2; exit 2; }

tasks="" write_tasks="" decide_tasks=1 cpus="" mem="" decide_mem="" time_limit="" partition="" account=""
max_parallel="" log_dir="slurm-logs" mmcurate="" dry_run=false
extra_sbatch=()
run_args=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --tasks) tasks=${2:?--tasks needs a value}; shift 2 ;;
    --write-tasks) write_tasks=${2:?--write-tasks needs a value}; shift 2 ;;
    --decide-tasks) decide_tasks=${2:?--decide-tasks needs a value}; shift 2 ;;
    --cpus-per-task) cpus=${2:?--cpus-per-task needs a value}; shift 2 ;;
    --mem) mem=${2:?--mem needs a value}; shift 2 ;;
    --decide-mem) decide_mem=${2:?--decide-mem needs a value}; shift 2 ;;
    --time) time_limit=${2:?--time needs a value}; shift 2 ;;
    --partition) partition=${2:?--partition needs a value}; shift 2 ;;
    --account) account=${2:?--account needs a value}; shift 2 ;;
    --max-parallel) max_parallel=${2:?--max-parallel needs a value}; shift 2 ;;
    --log-dir) log_dir=${2:?--log-dir needs a value}; shift 2 ;;
    --mmcurate) mmcurate=${2:?--mmcurate needs a value}; shift 2 ;;
    --sbatch-arg) extra_sbatch+=("${2:?--sbatch-arg needs a value}"); shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    --) shift; run_args=("$@"); break ;;
    *) echo "submit.sh: unknown option $1" >&2; usage ;;
  esac
done

is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
is_count "${tasks:-x}" || { echo "submit.sh: --tasks must be a whole number ≥ 1, got '${tasks}'" >&2; exit 2; }
write_tasks=${write_tasks:-$tasks}
is_count "$write_tasks" || { echo "submit.sh: --write-tasks must be a whole number ≥ 1, got '$write_tasks'" >&2; exit 2; }
is_count "$decide_tasks" || { echo "submit.sh: --decide-tasks must be a whole number ≥ 1, got '$decide_tasks'" >&2; exit 2; }
[ -z "$cpus" ] || is_count "$cpus" || { echo "submit.sh: --cpus-per-task must be a whole number ≥ 1, got '$cpus'" >&2; exit 2; }
[ -z "$max_parallel" ] || is_count "$max_parallel" || { echo "submit.sh: --max-parallel must be a whole number ≥ 1, got '$max_parallel'" >&2; exit 2; }
decide_mem=${decide_mem:-$mem}

mkdir -p "$log_dir"
log_dir=$(cd "$log_dir" && pwd)
if [ -n "$mmcurate" ]; then
  mmcurate=$(cd "$(dirname "$mmcurate")" && pwd)/$(basename "$mmcurate")
  [ -x "$mmcurate" ] || { echo "submit.sh: --mmcurate $mmcurate is not an executable" >&2; exit 2; }
fi

common=(--parsable --chdir "$PWD" --kill-on-invalid-dep=yes)
[ -z "$partition" ] || common+=(--partition "$partition")
[ -z "$account" ] || common+=(--account "$account")
[ -z "$time_limit" ] || common+=(--time "$time_limit")
[ -z "$cpus" ] || common+=(--cpus-per-task "$cpus")
common+=(${extra_sbatch[@]+"${extra_sbatch[@]}"})
# The binary travels in the environment (sbatch exports it by default).
[ -z "$mmcurate" ] || export MMCURATE="$mmcurate"

array() { # array TASKS [FIRST]
  local spec="${2:-0}-$(($1 - 1))"
  [ -z "$max_parallel" ] || spec+="%$max_parallel"
  echo "$spec"
}

submitted=0
submit() { # submit PHASE DEPENDENCY MEM [sbatch args...] -- [curate.sbatch args...]
  local phase=$1 dependency=$2 memory=$3
  shift 3
  local sbatch_args=() script_args=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do sbatch_args+=("$1"); shift; done
  shift
  script_args=("$@")
  local cmd=(sbatch "${common[@]}" --job-name "mmcurate-$phase")
  [ -z "$dependency" ] || cmd+=(--dependency "afterok:$dependency")
  [ -z "$memory" ] || cmd+=(--mem "$memory")
  cmd+=(${sbatch_args[@]+"${sbatch_args[@]}"} "$sbatch_script" "$phase" "$config" ${script_args[@]+"${script_args[@]}"} ${run_args[@]+"${run_args[@]}"})
  if $dry_run; then
    submitted=$((submitted + 1))
    printf '%q ' "${cmd[@]}" >&2
    echo >&2
    job_id="DRYRUN$submitted"
  else
    job_id=$("${cmd[@]}")
    job_id=${job_id%%;*} # --parsable prints "id" or "id;cluster"
  fi
  echo "${label:-$phase} $job_id"
}

submit measure "" "$mem" --array "$(array "$tasks")" --output "$log_dir/measure-%A_%a.out" -- --num-shards "$tasks"
measure_id=$job_id
decide_after=$measure_id
if [ "$decide_tasks" -gt 1 ]; then
  # Partition tasks: task 0 first and alone (it makes the shared part: run-wide dedup and the
  # CLIP embeddings, once, into <output>/state/), then the others, which read it.
  label=decide-partitions-first submit decide "$decide_after" "$decide_mem" --array 0 --output "$log_dir/decide-%A_%a.out" -- --num-shards "$decide_tasks"
  decide_after=$job_id
  if [ "$decide_tasks" -ge 2 ]; then
    label=decide-partitions submit decide "$decide_after" "$decide_mem" --array "$(array "$decide_tasks" 1)" --output "$log_dir/decide-%A_%a.out" -- --num-shards "$decide_tasks"
    decide_after=$job_id
  fi
fi
submit decide "$decide_after" "$decide_mem" --output "$log_dir/decide-%j.out" --
decide_id=$job_id
submit write "$decide_id" "$mem" --array "$(array "$write_tasks")" --output "$log_dir/write-%A_%a.out" -- --num-shards "$write_tasks"
write_id=$job_id
submit commit "$write_id" "" --output "$log_dir/commit-%j.out" --
