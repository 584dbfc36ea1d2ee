#!/usr/bin/env bash
# `flwr run .` against a local SuperLink in simulation mode: Flower's own way to run a
# federation on one machine, with the same ServerApp and ClientApp as a deployment and
# as `pv4fad simulate`. The SuperLink is started here on free 127.0.0.1 ports with
# runtime dependency installation switched off (the app runs in this virtual environment,
# nothing is installed per run), simulating one SuperNode per party of the scenario;
# the ServerApp (run config `simulation = true`) prepares the parties and writes the run
# directory as `pv4fad simulate` does. The SuperLink is stopped on exit.
#
#   deploy/run_flwr_local.sh [--data DIR] [--scenario NAME] [--stage all|train|test]
#                            [--phase-timeout SECONDS] [--deadline SECONDS] --out DIR
#
# Options as for `pv4fad simulate`; without --data, tiny synthetic data is generated into
# DIR/data. Outputs: DIR/run (run.json, summary.json, ledger.jsonl, predictions.csv,
# parties/<id>), DIR/logs. The last stdout line is one JSON object; exit codes as
# deploy/run_local.sh's (0, 2 bad input, 3 a run failed with the coordinator's one-line
# cause, 1 otherwise, 130 interrupted).
set -euo pipefail

usage() {
    sed -n '10,11p' "$0" | sed 's/^# *//' >&2
    exit 2
}

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${PV4FAD_VENV:-$repo/.venv}
data="" scenario="" stages="train,test" deadline=900 phase_timeout=900 out=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --data) data=${2:?--data needs a directory}; shift 2 ;;
        --scenario) scenario=${2:?--scenario needs a name}; shift 2 ;;
        --stage)
            case ${2:?--stage needs all, train or test} in
                all) stages="train,test" ;;
                train|test) stages=$2 ;;
                *) echo "run_flwr_local.sh: --stage must be all, train or test, not $2" >&2; exit 2 ;;
            esac
            shift 2 ;;
        --phase-timeout) phase_timeout=${2:?--phase-timeout needs seconds}; shift 2 ;;
        --deadline) deadline=${2:?--deadline needs seconds}; shift 2 ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        -h|--help) usage ;;
        *) echo "run_flwr_local.sh: unknown argument $1" >&2; usage ;;
    esac
done
[[ -n $out ]] || usage
for n in "$deadline" "$phase_timeout"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "run_flwr_local.sh: timeouts are whole seconds, not $n" >&2; exit 2; }
done
[[ -z $data || -d $data ]] || { echo "run_flwr_local.sh: --data $data is not a directory" >&2; exit 2; }
[[ -x $venv/bin/flwr ]] || { echo "run_flwr_local.sh: no flwr in $venv/bin (run make setup)" >&2; exit 2; }
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
export PATH="$venv/bin:$PATH"
# Nothing leaves the machine and nothing is installed at run time.
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
py="$venv/bin/python"
say() { echo "run_flwr_local: $*" >&2; }

link_pid=""
stop_link() {
    [[ -n $link_pid ]] || return 0
    local all=("$link_pid" $(pgrep -P "$link_pid" 2>/dev/null || true))
    kill -TERM "${all[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$link_pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL "${all[@]}" 2>/dev/null || true
}
trap stop_link EXIT
trap 'exit 130' INT TERM

if [[ -z $data ]]; then
    data=$out/data
    [[ -f $data/scenarios.txt ]] || "$venv/bin/pv4fad" data generate --out "$data" --scale tiny \
        --seed 0 >/dev/null
fi
data=$(cd "$data" && pwd)
# The scenario and its parties (one simulated SuperNode each); bad data is one line here,
# before anything starts.
parties_line=$("$venv/bin/pv4fad" data parties --data "$data" ${scenario:+--scenario "$scenario"}) \
    || exit 2
read -r scenario party_list <<< "$parties_line"
IFS=, read -ra party_ids <<< "$party_list"
n_parties=${#party_ids[@]}
if ! check=$("$venv/bin/pv4fad" data validate --data "$data" --scenario "$scenario" 2>&1 \
        >/dev/null); then
    echo "run_flwr_local.sh: ${check##*$'\n'}" >&2
    exit 2
fi

# Flower 1.42 serves every SuperLink API (control, runtime, fleet) on one HTTP port.
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$out/flwr"
cat > "$out/flwr/config.toml" <<EOF
[superlink]
default = "local"

[superlink.local]
address = "127.0.0.1:$port"
insecure = true
EOF
flwr_op() { FLWR_HOME=$out/flwr timeout 120 flwr "$@"; }

FLWR_HOME=$out/flwr flower-superlink --insecure --simulation \
    --disable-runtime-dependency-installation --isolation subprocess \
    --host 127.0.0.1 --port "$port" --database "$out/flwr/state.db" \
    > "$out/logs/superlink.log" 2>&1 &
link_pid=$!
for _ in $(seq 150); do
    flwr_op ls --format json 2>/dev/null | grep -q '"success": true' && break
    kill -0 "$link_pid" 2>/dev/null || { say "SuperLink exited; see $out/logs/superlink.log"; exit 1; }
    sleep 0.2
done
say "local simulation SuperLink on 127.0.0.1:$port ($n_parties SuperNodes); $scenario"

started=$SECONDS
# In the background and waited for, so that an interrupt is handled at once.
(cd "$repo" && flwr_op run . local --format json \
    --federation-config "num-supernodes=$n_parties" --run-config \
    "simulation=true num-parties=$n_parties run-dir=\"$out/run\" data-root=\"$data\" scenario=\"$scenario\" stages=\"$stages\" timeout-s=$phase_timeout") \
    > "$out/logs/submit.json" 2>&1 &
wait "$!" || true
run_id=$("$py" - "$out/logs/submit.json" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
try:
    reply = json.loads(text[text.index("{"):])
    print(reply["run-id"])
except (ValueError, KeyError):
    sys.exit("run_flwr_local.sh: flwr run failed: " + " ".join(text.split())[-600:])
PY
)
say "run $run_id submitted ($stages)"
status=""
while [[ $status != finished* ]]; do
    if (( SECONDS - started > deadline )); then
        flwr_op stop "$run_id" local >/dev/null 2>&1 || true
        say "run $run_id did not finish within $deadline s; stopped"
        exit 1
    fi
    sleep 2
    status=$(flwr_op ls local --run-id "$run_id" --format json 2>/dev/null \
        | "$py" -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["status"])' \
        2>/dev/null || true)
done
flwr_op log "$run_id" local --show > "$out/logs/run.log" 2>&1 || true
say "run $run_id: $status after $((SECONDS - started)) s (log: $out/logs/run.log)"
if [[ $status != finished:completed ]]; then
    cause=$(grep -h -o "pv4fad: error: .*" "$out/logs/run.log" 2>/dev/null | tail -n 1)
    say "run $run_id failed: ${cause:-no cause logged by the coordinator; see $out/logs/run.log}"
    exit 3
fi
"$py" - "$out" "$run_id" "$((SECONDS - started))" <<'PY'
import json, sys
from pathlib import Path
out, run_id, seconds = sys.argv[1:]
summary = json.loads((Path(out) / "run" / "summary.json").read_text())
print(json.dumps({"out": out, "run_id": run_id, "seconds": int(seconds),
                  "scenario": summary["scenario"], "auprc": summary.get("auprc"),
                  "summary": f"{out}/run/summary.json"}))
PY
