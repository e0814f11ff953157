#!/bin/sh
# Submit the federated run, wait for its real final status (flwr run --stream would exit 0 even
# for a failed run), and print the report.
set -eu
. /usr/local/bin/connect.sh
base=$(python -c 'from organfed.shared.demo.base_model import demo_base_dir; print(demo_base_dir())')
c=/fed/coordinator/corpora
out=$(flwr run /fed/coordinator/app organfed --format json --run-config "run-id='compose' \
work-dir='/fed/coordinator/work' base-model='$base' key-dir='/fed/coordinator/keys' \
trust-dir='/fed/coordinator/trust' num-rounds=${ROUNDS:-2} min-sites=3 wait-for-sites=3 train-steps=${STEPS:-30} \
eval-data='general=$c/general/val.txt,clinical=$c/clinical/val.txt,code=$c/code/val.txt,finance=$c/finance/val.txt'")
field() {  # print one field of the JSON that flwr printed (after any log lines)
  python -c 'import json, sys; t = sys.stdin.read(); d = json.loads(t[t.index("{"):]); print(d["runs"][0]["status"] if sys.argv[1] == "status" else d["run-id"])' "$1"
}
run=$(printf '%s' "$out" | field run-id)
echo "run $run submitted"
while :; do
  status=$(flwr list organfed --run-id "$run" --format json | field status)
  case "$status" in finished:*) break ;; esac
  sleep 5
done
echo "run $run: $status"
cat /fed/coordinator/work/runs/compose/report.md 2>/dev/null || true
[ "$status" = "finished:completed" ]
