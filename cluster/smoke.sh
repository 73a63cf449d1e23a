#!/usr/bin/env bash
# Checks surge end to end on the cluster: through `kubectl port-forward` to
# svc/surge-api (there is no Ingress controller here), POST a read job and
# wait until GET /jobs/{id} says succeeded: api -> Redis -> worker ->
# PostgreSQL, with the NetworkPolicies enforced. Prints the job as answered.
# Usage: cluster/smoke.sh [ITEM_ID]   (cluster/deploy.sh runs it)
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$CLUSTER_SRC/lib.sh"

item=${1:-42}
log=$LOGS/smoke-port-forward.log
# Local port 0: kubectl picks a free one and says which.
kubectl -n surge port-forward svc/surge-api :8080 >"$log" 2>&1 &
pf=$!
trap 'kill "$pf" 2>/dev/null; wait "$pf" 2>/dev/null || true' EXIT
port=
for _ in $(seq 1 60); do
    port=$(sed -n 's/^Forwarding from 127.0.0.1:\([0-9]*\) .*/\1/p' "$log" | head -1)
    [[ -n $port ]] && break
    kill -0 "$pf" 2>/dev/null || die "kubectl port-forward ended: $(cat "$log")"
    sleep 0.5
done
[[ -n $port ]] || die "kubectl port-forward gave no port: $(cat "$log")"
api=http://127.0.0.1:$port

# 503 while the api has no Redis yet (a restart): it says so, and we wait.
for _ in $(seq 1 60); do
    answer=$(curl -sS --max-time 10 -X POST -H 'Content-Type: application/json' \
        -d "{\"item_id\": $item}" "$api/jobs/read" 2>&1) || true
    [[ $answer == *'"unavailable"'* || $answer == *"Connection refused"* ]] || break
    sleep 1
done
id=$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' <<<"$answer")
[[ -n $id ]] || die "POST /jobs/read answered: $answer"
for _ in $(seq 1 60); do
    job=$(curl -sS --max-time 10 "$api/jobs/$id")
    case $job in *'"succeeded"'* | *'"failed"'* | *'"dead"'*) break ;; esac
    sleep 1
done
echo "$job"
[[ $job =~ \"status\":\ *\"succeeded\" ]] || die "read job $id did not succeed"
say "read job $id succeeded (api -> Redis -> worker -> PostgreSQL)"
