#!/usr/bin/env bash
# Runs the four phases of an mmcurate run on Kubernetes, one Job each, in order: applies the
# ConfigMap, then measure (an Indexed Job), decide, write (an Indexed Job) and commit, starting
# each when the one before has completed and stopping at the first that fails. Kubernetes has no
# dependencies between Jobs, so this script is the chain; it schedules no pod itself. Running it
# again resumes: it replaces each Job (a Job's spec cannot change) and mmcurate skips the work
# units an earlier attempt finished.
#
#   deploy/kubernetes/run.sh [--namespace NS] [--image IMAGE] [--from PHASE] [--poll SECONDS]
#
# --image replaces the Jobs' `image: mmcurate:latest` with your registry's image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
namespace=() image="" from=measure poll=10
while [ "$#" -gt 0 ]; do
  case "$1" in
    --namespace) namespace=(--namespace "${2:?--namespace needs a value}"); shift 2 ;;
    --image) image=${2:?--image needs a value}; shift 2 ;;
    --from) from=${2:?--from needs a phase}; shift 2 ;;
    --poll) poll=${2:?--poll needs seconds}; shift 2 ;;
    *) echo "usage: run.sh [--namespace NS] [--image IMAGE] [--from measure|decide|write|commit] [--poll SECONDS]" >&2; exit 2 ;;
  esac
done
kubectl() { command kubectl ${namespace[@]+"${namespace[@]}"} "$@"; }

phases=(measure decide write commit)
case " ${phases[*]} " in *" $from "*) ;; *) echo "run.sh: --from must be one of: ${phases[*]}" >&2; exit 2 ;; esac

kubectl apply -f "$here/configmap.yaml"
started=false
for phase in "${phases[@]}"; do
  [ "$phase" = "$from" ] && started=true
  $started || continue
  job="mmcurate-$phase"
  kubectl delete job "$job" --ignore-not-found --wait=true
  if [ -n "$image" ]; then
    sed "s|image: mmcurate:latest|image: $image|" "$here/$phase.yaml" | kubectl apply -f -
  else
    kubectl apply -f "$here/$phase.yaml"
  fi
  echo "run.sh: $job started" >&2
  while true; do
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
