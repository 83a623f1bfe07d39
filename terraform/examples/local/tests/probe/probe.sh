#!/usr/bin/env bash
# probe.sh OUT NAME=URL...: for each node, calls the hello function with the node's name until it
# answers (followers deploy what the leader applied within a second or two); then queues an async
# call on the first node and follows the job through the other nodes until it succeeded. Writes
# what it saw to OUT as JSON; exits non-zero, saying why, if any step fails.
set -euo pipefail
out=$1
shift
declare -A urls=()
names=()
for pair in "$@"; do
  names+=("${pair%%=*}")
  urls[${pair%%=*}]=${pair#*=}
done

deadline=$((SECONDS + 60))
greetings="{}"
for name in "${names[@]}"; do
  until answer=$(curl -sf --max-time 5 "${urls[$name]}/hello?name=$name"); do
    ((SECONDS < deadline)) || {
      echo "probe: ${urls[$name]}/hello never answered" >&2
      exit 1
    }
    sleep 0.2
  done
  greetings=$(python3 -c 'import json,sys; g=json.loads(sys.argv[1]); g[sys.argv[2]]=sys.argv[3]; print(json.dumps(g))' \
    "$greetings" "$name" "$answer")
done

queued_on=${names[0]}
accepted=$(curl -sf --max-time 5 -X POST -H 'X-Gojinn-Async: true' "${urls[$queued_on]}/demo/hello?name=job")
job=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])' <<<"$accepted")

jobs="{}"
for name in "${names[@]:1}"; do
  until record=$(curl -sf --max-time 5 "${urls[$name]}/_gojinn/v1/jobs/$job") &&
    [ "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' <<<"$record")" = succeeded ]; do
    ((SECONDS < deadline)) || {
      echo "probe: job $job queued on $queued_on did not succeed as seen from $name: ${record:-no answer}" >&2
      exit 1
    }
    sleep 0.2
  done
  jobs=$(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); j[sys.argv[2]]=json.loads(sys.argv[3]); print(json.dumps(j))' \
    "$jobs" "$name" "$record")
done

python3 -c 'import json,sys; print(json.dumps({"greetings": json.loads(sys.argv[1]), "job": {"id": sys.argv[2], "queued_on": sys.argv[3], "seen_from": json.loads(sys.argv[4])}}))' \
  "$greetings" "$job" "$queued_on" "$jobs" >"$out"
echo "probe: every node answered; job $job queued on $queued_on succeeded, seen from ${names[*]:1}"
