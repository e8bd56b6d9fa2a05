#!/usr/bin/env bash
# Runs the four phases of an mmcurate run on Kubernetes, one Job each, in order: applies the
# ConfigMap, then measure (an Indexed Job), decide, write (an Indexed Job) and commit, starting
# each when the one before has completed and stopping at the first that fails. Kubernetes has no
# dependencies between Jobs, so this script is the chain; it schedules no pod itself. Running it
# again resumes: it replaces each Job (a Job's spec cannot change) and mmcurate skips the work
# units an earlier attempt finished. With --decide-partitions, the decide phase's semantic search
# is spread first over the pods of decide-partitions.yaml: pod 0 alone (it makes the shared part,
# CLIP included, once), then the others at the manifest's parallelism; mmcurate-decide then
# merges their pairs.
#
#   deploy/kubernetes/run.sh [--namespace NS] [--image IMAGE] [--from PHASE] [--poll SECONDS]
#                            [--decide-partitions]
#
# --image replaces the Jobs' `image: mmcurate:latest` with your registry's image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
namespace=() image="" from=measure poll=10 partitions=false
while [ "$#" -gt 0 ]; do
  case "$1" in
    --namespace) namespace=(--namespace "${2:?--namespace needs a value}"); shift 2 ;;
    --image) image=${2:?--image needs a value}; shift 2 ;;
    --from) from=${2:?--from needs a phase}; shift 2 ;;
    --poll) poll=${2:?--poll needs seconds}; shift 2 ;;
    --decide-partitions) partitions=true; shift ;;
    *) echo "usage: run.sh [--namespace NS] [--image IMAGE] [--from measure|decide-partitions|decide|write|commit] [--poll SECONDS] [--decide-partitions]" >&2; exit 2 ;;
  esac
done
kubectl() { command kubectl ${namespace[@]+"${namespace[@]}"} "$@"; }

phases=(measure decide write commit)
if $partitions; then phases=(measure decide-partitions decide write commit); fi
case " ${phases[*]} " in *" $from "*) ;; *) echo "run.sh: --from must be one of: ${phases[*]}" >&2; exit 2 ;; esac

kubectl apply -f "$here/configmap.yaml"
started=false
for phase in "${phases[@]}"; do
  [ "$phase" = "$from" ] && started=true
  $started || continue
  job="mmcurate-$phase"
  kubectl delete job "$job" --ignore-not-found --wait=true
  manifest=$(sed "s|image: mmcurate:latest|image: ${image:-mmcurate:latest}|" "$here/$phase.yaml")
  first_alone=false
  if [ "$phase" = decide-partitions ]; then
    # Pod 0 alone first (the Job controller starts the lowest pending index), then the rest.
    parallelism=$(printf '%s\n' "$manifest" | sed -n 's/^  parallelism: *\([0-9]*\).*/\1/p')
    manifest=$(printf '%s\n' "$manifest" | sed 's/^  parallelism: *[0-9]*/  parallelism: 1/')
    first_alone=true
  fi
  printf '%s\n' "$manifest" | kubectl apply -f -
  echo "run.sh: $job started" >&2
  while true; do
    if $first_alone && [ "$(kubectl get job "$job" -o jsonpath='{.status.succeeded}')" -ge 1 ] 2>/dev/null; then
      kubectl patch job "$job" --type merge -p "{\"spec\":{\"parallelism\":${parallelism:-1}}}"
      echo "run.sh: $job: the shared part is made; $parallelism pods at once now" >&2
      first_alone=false
    fi
    conditions=$(kubectl get job "$job" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')
    case " $conditions " in
      *" Complete "*) echo "run.sh: $job completed" >&2; break ;;
      *" Failed "*)
        echo "run.sh: $job failed; its pods' logs: kubectl logs -l mmcurate/phase=$phase --prefix" >&2
        echo "run.sh: after fixing the cause, resume with: $0 --from $phase" >&2
        exit 1
        ;;
    esac
    sleep "$poll"
  done
done
echo "run.sh: all phases completed" >&2
