#!/usr/bin/env bash
# Kill trials: runs mmcurate on a corpus this script makes, kills it with SIGKILL at a random
# moment, starts it again with the same command and checks that the shards and ledger of the
# current version are byte-identical to an uninterrupted run's. Trials cycle through six kinds:
# a kill inside the measure, the decide or the write phase run as separate commands (two slices
# each for measure and write, as on two nodes), and a kill of a one-machine `mmcurate run` in
# each of those phases. The moment is drawn at random within the phase: after a random number of
# the units or shards it commits, plus a random delay. The phase a kill hit is read from the
# state the killed process left. Prints one table row per trial and a summary; exits 1 if any
# result differs. Needs the ffmpeg CLI (the corpus), GNU coreutils and awk.
#
#   bash scripts/reliability/kill_trials.sh [--trials N] [--images N] [--seed S]
#                                           [--mmcurate PATH] [--work DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."

trials=24 images=600 seed=1 mmcurate="" work=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --trials) trials=${2:?}; shift 2 ;;
    --images) images=${2:?}; shift 2 ;;
    --seed) seed=${2:?}; shift 2 ;;
    --mmcurate) mmcurate=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    *) echo "usage: kill_trials.sh [--trials N] [--images N] [--seed S] [--mmcurate PATH] [--work DIR]" >&2; exit 2 ;;
  esac
done
if [ -z "$mmcurate" ]; then
  cargo build --locked --quiet --bin mmcurate
  mmcurate=$PWD/target/debug/mmcurate
fi
[ -x "$mmcurate" ] || { echo "kill_trials.sh: $mmcurate is not an executable" >&2; exit 2; }
if [ -z "$work" ]; then
  work=$(mktemp -d -t mmcurate-kill-trials-XXXXXX)
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
RANDOM=$seed
slices=2

# The corpus: blurred noise (all distinct, kept), frames of a Mandelbrot zoom and of a test
# pattern (many near duplicates: dedup has work to do), exact copies, and broken files.
corpus=$work/corpus
if [ ! -f "$corpus/.complete" ]; then
  rm -rf "$corpus"
  mkdir -p "$corpus"
  third=$((images / 3))
  ffmpeg -loglevel error -f lavfi \
    -i "nullsrc=s=384x288:r=25,geq=lum='random(1)*255':cb='128+60*sin(N)':cr=128,gblur=sigma=1.5" \
    -frames:v "$third" -q:v 2 "$corpus/noise-%04d.jpg"
  ffmpeg -loglevel error -f lavfi -i "mandelbrot=size=480x360:rate=25" \
    -frames:v "$third" -q:v 4 "$corpus/mandelbrot-%04d.jpg"
  ffmpeg -loglevel error -f lavfi -i "testsrc2=size=400x300:rate=7" \
    -frames:v $((images - 2 * third - 12)) "$corpus/pattern-%04d.png"
  for i in 1 2 3 4 5 6 7 8 9 10; do
    cp "$corpus/noise-$(printf %04d "$i").jpg" "$corpus/copy-$i.jpg"
  done
  head -c 5000 "$corpus/noise-0011.jpg" > "$corpus/truncated.jpg"
  echo "not an image" > "$corpus/text.jpg"
  touch "$corpus/.complete"
fi

config=$work/job.toml
cat > "$config" <<EOF
[run]
name = "kill-trials"
output = "$work/unused"
threads = 2
unit_size = 32                  # work units of 32 files: a kill lands between finished units

[[inputs]]
uri = "$corpus"
format = "files"

[filters.image]
min_side = 64
min_sharpness = 30.0

[dedup]
exact = true
phash_max_distance = 6

[output]
max_samples_per_shard = 25
EOF

# The shards and ledger of an output's current version, as "sha256  path" lines.
fingerprint() {
  local out=$1 version=$1
  if [ -f "$out/current.json" ]; then
    version=$out/$(python3 -c '
import json, sys
pointer = json.load(open(sys.argv[1]))
def find(v):
    if isinstance(v, str) and v.startswith("versions/"):
        return v.rstrip("/").split("/manifest.json")[0]
    items = v.values() if isinstance(v, dict) else v if isinstance(v, list) else []
    for item in items:
        found = find(item)
        if found:
            return found
print(find(pointer) or "")
' "$out/current.json")
  fi
  (cd "$version" && find shards ledger -type f -print0 2>/dev/null | sort -z | xargs -0 -r sha256sum)
}

# The commands of a phased run into $1, one per line: measure slices, decide, write slices, commit.
phase_commands() {
  local out=$1 i
  for i in $(seq 0 $((slices - 1))); do echo "measure run $config --set run.output=$out --phase measure --num-shards $slices --shard-index $i"; done
  echo "decide run $config --set run.output=$out --phase decide"
  for i in $(seq 0 $((slices - 1))); do echo "write run $config --set run.output=$out --phase write --num-shards $slices --shard-index $i"; done
  echo "commit run $config --set run.output=$out --phase commit"
}

now() { date +%s.%N; }
elapsed() { awk -v now="$(now)" -v start="$1" 'BEGIN { printf "%.3f", now - start }'; }
# A random number of seconds in [lo, hi] (fractions of a second), from bash's seeded RANDOM.
random_between() { awk -v lo="$1" -v hi="$2" -v r="$RANDOM" 'BEGIN { printf "%.3f", lo + (hi - lo) * r / 32767 }'; }

# Runs mmcurate with arguments $2.. to completion, logging to $1; fails the script if it fails.
run_ok() {
  local log=$1
  shift
  if ! RUST_LOG=info "$mmcurate" -q "$@" >> "$log" 2>&1; then
    echo "kill_trials.sh: mmcurate $* failed; log: $log" >&2
    tail -20 "$log" >&2
    exit 1
  fi
}

echo "corpus: $corpus ($(find "$corpus" -type f ! -name .complete | wc -l) files), mmcurate: $mmcurate, work: $work" >&2

# The references: an uninterrupted one-machine run, and the phased run timed per command.
rm -rf "$work"/reference* "$work"/trial-* "$work/restart.log" "$work/never"
start=$(now)
run_ok "$work/reference.log" run "$config" --set "run.output=$work/reference"
whole_seconds=$(elapsed "$start")
reference=$(fingerprint "$work/reference")
declare -a phase_names phase_args phase_seconds
while read -r name args; do
  start=$(now)
  # shellcheck disable=SC2086 # args are words without spaces (paths made above)
  run_ok "$work/reference-phased.log" $args
  phase_names+=("$name")
  phase_args+=("${args//$work\/reference-phased/@OUT@}")
  phase_seconds+=("$(elapsed "$start")")
done < <(phase_commands "$work/reference-phased")
if [ "$(fingerprint "$work/reference-phased")" != "$reference" ]; then
  echo "kill_trials.sh: the phased run without kills differs from the one-machine run" >&2
  exit 1
fi
# How far a killed run got, from what it left in its output: finished units (`.records`, written
# last per unit), the decisions, the written shards (one `.json` per shard under the decisions),
# `_SUCCESS`.
total_units=$(grep -o 'measure (slice [0-9]* of [0-9]*): [0-9]* work unit' "$work/reference-phased.log" |
  awk '{ sum += $6 } END { print sum + 0 }')
total_shards=$(grep -o 'decide: [0-9]* shard(s) planned' "$work/reference-phased.log" | tail -1 | awk '{ print $2 }')
progress_of() { # progress_of OUTPUT: the phase a run killed there was in, and how far it got
  local out=$1 units decisions shards
  if [ -f "$out/_SUCCESS" ] || [ -f "$out/current.json" ]; then echo "finished"; return; fi
  units=$(find "$out/state" -name '*.records' 2>/dev/null | wc -l || true)
  decisions=$(find "$out/state" -name 'decisions.cbor' 2>/dev/null | wc -l || true)
  shards=$(find "$out/state" -path '*/decide-*/shards/*.json' 2>/dev/null | wc -l || true)
  if [ "$decisions" -eq 0 ]; then
    if [ "$units" -lt "$total_units" ]; then echo "measure ($units/$total_units units done)"
    else echo "decide ($units/$total_units units done)"; fi
  elif [ "$shards" -lt "$total_shards" ]; then echo "write ($shards/$total_shards shards done)"
  else echo "commit ($shards/$total_shards shards done)"; fi
}
echo "reference: one-machine run ${whole_seconds}s; phased commands: $(paste -d= <(printf '%s\n' "${phase_names[@]}") <(printf '%s\n' "${phase_seconds[@]}") | tr '\n' ' ')" >&2

# The state files a run leaves, counted with bash globs into a variable, and a timed `read` on
# a FIFO nobody writes to as the pause: the polls below start no process, so they notice a
# committed unit or shard within a few milliseconds (a one-machine run writes a shard every
# few milliseconds here).
shopt -s nullglob
mkfifo "$work/never"
exec {never}<>"$work/never"
pause() { read -r -t "$1" -u "$never" _ || true; }
count_into() { # count_into VAR FILES...: VAR = the number of FILES (after globbing)
  local -n count_var=$1
  shift
  count_var=$#
}
units_at_least() { # units_at_least OUTPUT N: N units finished (their .records written)
  local n
  count_into n "$1"/state/measure-*/units/*.records
  [ "$n" -ge "$2" ]
}
shards_at_least() { # shards_at_least OUTPUT N: decisions committed and N shards written
  local decided n
  count_into decided "$1"/state/measure-*/decide-*/decisions.cbor
  count_into n "$1"/state/measure-*/decide-*/shards/*.json
  [ "$decided" -ge 1 ] && [ "$n" -ge "$2" ]
}
alive() { # alive PID: the process runs (not ended, not a zombie waiting to be reaped)
  local stat
  [ -r "/proc/$1/stat" ] && read -r stat < "/proc/$1/stat" 2>/dev/null && [[ "$stat" != *") Z "* ]]
}
# kill_when PID EXTRA CONDITION...: once CONDITION holds (polled every 2 ms), waits EXTRA
# seconds and kills PID with SIGKILL; sets `fired` to how long after the call it killed (empty
# if the process ended first). The moment is random because the caller draws the condition's
# count and EXTRA at random.
kill_when() {
  local pid=$1 extra=$2 started
  shift 2
  started=$(now)
  fired=""
  while alive "$pid"; do
    if "$@"; then
      pause "$extra"
      kill -9 "$pid" 2>/dev/null || true
      fired=$(elapsed "$started")
      return
    fi
    pause 0.002
  done
}
# Items of each slice in the reference: units measured per measure slice, shards per write slice.
slice_items() { # slice_items PHASE SLICE
  case "$1" in
    measure) grep -o "measure (slice $2 of [0-9]*): [0-9]* work unit" "$work/reference-phased.log" | awk '{ print $6 }' | tail -1 ;;
    write) grep -o "write (slice $2 of [0-9]*): [0-9]* shard" "$work/reference-phased.log" | awk '{ print $6 }' | tail -1 ;;
  esac
}
decide_seconds=${phase_seconds[$slices]}

# Trials cycle through six kinds: the measure, decide and write phases run as separate commands
# (a random slice's command killed), then a one-machine `mmcurate run` killed in each phase.
# Measure and write are killed after a random number of their own units or shards (0 to all but
# one) plus up to 0.2 s; decide at a random moment of its reference duration.
kinds=(measure decide write run:measure run:decide run:write)
printf '| trial | target | killed in (state it left) | command killed | kill after (s) | exit | restart (same command) reused | result |\n'
printf '|---:|---|---|---|---:|---|---|---|\n'
failures=0
hits_measure=0 hits_decide=0 hits_write=0
for trial in $(seq 1 "$trials"); do
  kind=${kinds[$(((trial - 1) % ${#kinds[@]}))]}
  out=$work/trial-$trial
  log=$work/trial-$trial.log
  rm -rf "$out" "$log" "$work/restart.log"
  fired=""
  status=0
  if [[ "$kind" == run:* ]]; then
    target_phase=${kind#run:}
    RUST_LOG=info "$mmcurate" run "$config" --set "run.output=$out" >> "$log" 2>&1 &
    pid=$!
    case "$target_phase" in
      measure) kill_when "$pid" "$(random_between 0 0.2)" units_at_least "$out" $((RANDOM % total_units)) ;;
      # In one process, decide follows the last unit at once and lasts tens of milliseconds.
      decide) kill_when "$pid" "$(random_between 0 0.04)" units_at_least "$out" "$total_units" ;;
      write) kill_when "$pid" "$(random_between 0 0.004)" shards_at_least "$out" $((RANDOM % total_shards)) ;;
    esac
    wait "$pid" 2>/dev/null || status=$?
    progress=$(progress_of "$out")
    run_ok "$work/restart.log" run "$config" --set "run.output=$out"
    command_killed="run"
  else
    target_phase=$kind
    # The commands of this phase (one per slice); kill a random one of them.
    candidates=()
    for i in "${!phase_names[@]}"; do
      [ "${phase_names[$i]}" = "$kind" ] && candidates+=("$i")
    done
    target=${candidates[$((RANDOM % ${#candidates[@]}))]}
    for i in "${!phase_names[@]}"; do
      # shellcheck disable=SC2206 # words without spaces
      args=(${phase_args[$i]//@OUT@/$out})
      if [ "$i" -eq "$target" ]; then
        count_into before_units "$out"/state/measure-*/units/*.records
        count_into before_shards "$out"/state/measure-*/decide-*/shards/*.json
        RUST_LOG=info "$mmcurate" -q "${args[@]}" >> "$log" 2>&1 &
        pid=$!
        case "$kind" in
          measure)
            items=$(slice_items measure "${args[-1]}")
            kill_when "$pid" "$(random_between 0 0.2)" units_at_least "$out" $((before_units + RANDOM % items)) ;;
          decide)
            kill_when "$pid" "$(random_between 0.01 "$(awk -v s="$decide_seconds" 'BEGIN { print s * 0.5 }')")" true ;;
          write)
            items=$(slice_items write "${args[-1]}")
            kill_when "$pid" "$(random_between 0 0.004)" shards_at_least "$out" $((before_shards + RANDOM % items)) ;;
        esac
        wait "$pid" 2>/dev/null || status=$?
        progress=$(progress_of "$out")
        run_ok "$work/restart.log" "${args[@]}"
      else
        run_ok "$log" "${args[@]}"
      fi
    done
    command_killed="${phase_args[$target]##* --phase }"
    command_killed="--phase ${command_killed}"
  fi
  hit_phase=${progress%% *}
  label=$progress
  delay="-"
  [ -z "$fired" ] || delay=$(printf '%.3f' "$fired")
  # What the restarted command reused, from its log ("N already measured", "N already written").
  restart_text=$(sed -nE \
    -e 's/.*measure \(slice [0-9]+ of [0-9]+\): ([0-9]+) work unit\(s\), ([0-9]+) already measured.*/measure: \2 of \1 units reused/p' \
    -e 's/.*write \(slice [0-9]+ of [0-9]+\): ([0-9]+) shard\(s\) written, ([0-9]+) already written.*/write: \2 shards reused, \1 written/p' \
    "$work/restart.log" | paste -sd ';' - | sed 's/;/; /g' || true)
  [ -n "$restart_text" ] || restart_text="ok"
  cat "$work/restart.log" >> "$log"
  if [ "$status" -eq 137 ]; then
    case "$hit_phase" in
      measure) hits_measure=$((hits_measure + 1)) ;;
      decide) hits_decide=$((hits_decide + 1)) ;;
      write) hits_write=$((hits_write + 1)) ;;
    esac
    exit_text="killed"
  else
    exit_text="$status (ended first)"
  fi
  if [ "$(fingerprint "$out")" = "$reference" ]; then
    result="identical"
  else
    result="DIFFERENT"
    failures=$((failures + 1))
  fi
  printf '| %d | %s | %s | `%s` | %s | %s | %s | %s |\n' "$trial" "$target_phase" "$label" "$command_killed" "$delay" "$exit_text" "$restart_text" "$result"
done
echo
echo "$trials trials, $failures different; killed (SIGKILL, exit 137) inside measure $hits_measure, decide $hits_decide, write $hits_write times; reference $(echo "$reference" | wc -l) shard and ledger files"
[ "$failures" -eq 0 ]
