#!/usr/bin/env bash
# A real multi-process pv4fad deployment on loopback: one SuperLink (coordinator side),
# one SuperNode per party (the PNS and every bank client of the scenario), each with its
# own Flower home and state directory, then `flwr run` for the train stage and, as a
# second run on the saved state, the test stage. Everything listens on 127.0.0.1 only;
# every process started here is stopped on exit, and each wait is bounded.
#
#   deploy/run_local.sh [--insecure] [--data DIR] [--scenario NAME] [--stage all|train|test]
#                       [--phase-timeout SECONDS] [--deadline SECONDS] [--out] OUT_DIR
#
# The options mean what they mean for `pv4fad simulate`: --stage, --phase-timeout (seconds a
# party may take per phase, default 900) and --out; --deadline bounds the whole script
# (default 900 s). Old spellings, accepted with a warning: --stages LIST, --timeout
# SECONDS (the whole script's limit, now --deadline).
#
# Default: TLS on the SuperLink (deploy/gen-certs.sh) and SuperNode authentication
# (deploy/gen-node-key.sh + `flwr supernode register`); --insecure switches both off.
# Without --data, tiny synthetic data is generated into OUT_DIR/data.
# Outputs: OUT_DIR/run (the coordinator's run directory, with parties/<id> state
# directories, the merged ledger.jsonl and predictions.csv), OUT_DIR/audit.json,
# OUT_DIR/logs/*.log. The last stdout line is one JSON object summarising the runs.
set -euo pipefail

usage() {
    sed -n '8,9p' "$0" | sed 's/^# *//' >&2
    exit 2
}

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${PV4FAD_VENV:-$repo/.venv}
insecure=0 data="" scenario="" stages="train,test" timeout_s=900 phase_timeout=900 out=""
renamed() { echo "run_local.sh: warning: $1 is now spelled $2; the old spelling will be removed in a later release" >&2; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --insecure) insecure=1; shift ;;
        --data) data=${2:?--data needs a directory}; shift 2 ;;
        --scenario) scenario=${2:?--scenario needs a name}; shift 2 ;;
        --stage)
            case ${2:?--stage needs all, train or test} in
                all) stages="train,test" ;;
                train|test) stages=$2 ;;
                *) echo "run_local.sh: --stage must be all, train or test, not $2" >&2; exit 2 ;;
            esac
            shift 2 ;;
        --stages) renamed --stages "--stage all|train|test"; stages=${2:?--stages needs a list like train,test}; shift 2 ;;
        --phase-timeout) phase_timeout=${2:?--phase-timeout needs seconds}; shift 2 ;;
        --deadline) timeout_s=${2:?--deadline needs seconds}; shift 2 ;;
        --timeout) renamed "--timeout (the whole script's limit)" --deadline
                   timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
        --out) [[ -z $out ]] || usage; out=${2:?--out needs a directory}; shift 2 ;;
        -h|--help) usage ;;
        -*) echo "run_local.sh: unknown option $1" >&2; usage ;;
        *) [[ -z $out ]] || usage; out=$1; shift ;;
    esac
done
[[ -n $out ]] || usage
[[ $timeout_s =~ ^[0-9]+$ ]] || { echo "run_local.sh: --deadline must be whole seconds" >&2; exit 2; }
[[ $phase_timeout =~ ^[0-9]+$ ]] || { echo "run_local.sh: --phase-timeout must be whole seconds" >&2; exit 2; }
[[ -z $data || -d $data ]] || { echo "run_local.sh: --data $data is not a directory" >&2; exit 2; }
[[ -x $venv/bin/flwr ]] || { echo "run_local.sh: no flwr in $venv/bin (run make setup)" >&2; exit 2; }
if [[ -e $out && -n $(ls -A "$out" 2>/dev/null) ]]; then
    echo "run_local.sh: $out is not empty; give a new directory" >&2
    exit 2
fi
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
export PATH="$venv/bin:$PATH"
# Nothing leaves the machine: no telemetry, no update check, no per-run `uv` installs.
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
py="$venv/bin/python"
say() { echo "run_local: $*" >&2; }

# -- process bookkeeping: every pid started here, stopped with its descendants -------------
pids=()
descendants() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}
stop_all() {
    local pid all=()
    for pid in "${pids[@]}"; do
        all+=("$pid" $(descendants "$pid"))
    done
    [[ ${#all[@]} -gt 0 ]] || return 0
    kill -TERM "${all[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "${all[@]}" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL "${all[@]}" 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start() {  # start NAME CMD...: run CMD in the background, log to logs/NAME.log
    local name=$1
    shift
    "$@" > "$out/logs/$name.log" 2>&1 &
    pids+=("$!")
}

free_ports() {  # free_ports N: N distinct free TCP ports on 127.0.0.1
    "$py" - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# -- data and parties ---------------------------------------------------------------------
if [[ -z $data ]]; then
    data=$out/data
    say "generating tiny synthetic data into $data"
    "$venv/bin/pv4fad" data generate --out "$data" --scale tiny --seed 0 >/dev/null
fi
data=$(cd "$data" && pwd)
# The scenario and its parties, the PNS first (one SuperNode each).
parties_line=$("$venv/bin/pv4fad" data parties --data "$data" ${scenario:+--scenario "$scenario"}) \
    || exit 2
read -r scenario parties <<< "$parties_line"
# Every party's files checked before any process starts: bad data is one line, here, and
# not a ServerApp traceback with the cause in a SuperNode's log.
if ! check=$("$venv/bin/pv4fad" data validate --data "$data" --scenario "$scenario" 2>&1 \
        >/dev/null); then
    echo "run_local.sh: ${check##*$'\n'}" >&2
    exit 2
fi
IFS=, read -r -a party_ids <<< "$parties"
n_parties=${#party_ids[@]}
say "scenario $scenario: parties ${party_ids[*]}"

read -r -a ports <<< "$(free_ports $((n_parties + 1)))"
link_port=${ports[0]}
link=127.0.0.1:$link_port

# -- TLS and SuperNode keys ---------------------------------------------------------------
tls_args=(--insecure)
node_tls=(--insecure)
if [[ $insecure == 0 ]]; then
    "$repo/deploy/gen-certs.sh" "$out/certs" 2>/dev/null
    tls_args=(--ssl-ca-certfile "$out/certs/ca.crt" --ssl-certfile "$out/certs/server.crt"
              --ssl-keyfile "$out/certs/server.key" --enable-supernode-auth)
    node_tls=(--root-certificates "$out/certs/ca.crt")
fi

# The operator's `flwr` connection, kept in its own Flower home.
mkdir -p "$out/operator"
{
    echo '[superlink]'
    echo 'default = "pv4fad"'
    echo '[superlink.pv4fad]'
    echo "address = \"$link\""
    if [[ $insecure == 1 ]]; then echo 'insecure = true'
    else echo "root-certificates = \"$out/certs/ca.crt\""; fi
} > "$out/operator/config.toml"
flwr_op() { FLWR_HOME=$out/operator timeout 120 flwr "$@"; }

# -- SuperLink ----------------------------------------------------------------------------
mkdir -p "$out/superlink"
start superlink env FLWR_HOME="$out/superlink" flower-superlink "${tls_args[@]}" \
    --host 127.0.0.1 --port "$link_port" --database "$out/superlink/state.db" \
    --disable-runtime-dependency-installation
for _ in $(seq 150); do
    flwr_op ls --format json >/dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2>/dev/null || { say "SuperLink exited; see $out/logs/superlink.log"; exit 1; }
    sleep 0.2
done
flwr_op ls --format json >/dev/null 2>&1 || { say "SuperLink did not come up on $link"; exit 1; }
say "SuperLink up on $link ($([[ $insecure == 1 ]] && echo insecure || echo TLS + SuperNode auth))"

# -- identities and policies: what each party does on its own machine before joining --------
# Each party makes its X25519 identity (`pv4fad party init`) and pins every peer's public
# key in its own policy (`pv4fad party policy`); the coordinator never relays keys. Here the
# out-of-band exchange is one step, with the protocol's default limits.
"$py" - "$out/run/parties" "$parties" <<'PY'
import sys
from pathlib import Path
from federation.config import ProtocolConfig
from federation.simulate import prepare_parties
prepare_parties(Path(sys.argv[1]), sys.argv[2].split(","), ProtocolConfig())
PY

# -- SuperNodes: one per party, each dialling out to the SuperLink only --------------------
for i in "${!party_ids[@]}"; do
    pid=${party_ids[$i]}
    role=bank
    [[ $pid == swift ]] && role=pns
    auth=()
    if [[ $insecure == 0 ]]; then
        "$repo/deploy/gen-node-key.sh" "$out/parties/$pid/keys" "$pid" 2>/dev/null
        flwr_op supernode register "$out/parties/$pid/keys/$pid.pub" pv4fad --name "$pid" \
            > "$out/logs/register-$pid.log" 2>&1
        auth=(--auth-supernode-private-key "$out/parties/$pid/keys/$pid.key")
    fi
    mkdir -p "$out/parties/$pid/flwr" "$out/run/parties/$pid"
    config="role=\"$role\" party-id=\"$pid\" data-root=\"$data\" scenario=\"$scenario\""
    config+=" state-dir=\"$out/run/parties/$pid\" policy=\"$out/run/parties/$pid/policy.json\""
    start "supernode-$pid" env FLWR_HOME="$out/parties/$pid/flwr" flower-supernode \
        "${node_tls[@]}" "${auth[@]}" --superlink "$link" --host 127.0.0.1 \
        --port "${ports[$((i + 1))]}" --max-wait-time 60 --node-config "$config"
done

# -- runs: train, then test on the saved state --------------------------------------------
deadline=$((SECONDS + timeout_s))
run_ids=() run_seconds=()
IFS=, read -r -a stage_list <<< "$stages"
for stage in "${stage_list[@]}"; do
    say "submitting the $stage run"
    started=$SECONDS
    # In the background and waited for, so that an interrupt is handled at once (bash runs
    # a trap only after the foreground command it is waiting for has finished).
    (cd "$repo" && flwr_op run . pv4fad --format json --run-config \
        "num-parties=$n_parties run-dir=\"$out/run\" stages=\"$stage\" timeout-s=$phase_timeout") \
        > "$out/logs/submit-$stage.json" &
    pids+=("$!")
    wait "$!"
    submitted=$(cat "$out/logs/submit-$stage.json")
    run_id=$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["run-id"])' "$submitted")
    run_ids+=("$run_id")
    status=""
    while [[ $status != finished* ]]; do
        if (( SECONDS > deadline )); then
            say "run $run_id ($stage) did not finish within $timeout_s s; stopping"
            flwr_op stop "$run_id" pv4fad >/dev/null 2>&1 || true
            exit 1
        fi
        sleep 2
        status=$(flwr_op ls pv4fad --run-id "$run_id" --format json 2>/dev/null \
            | "$py" -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["status"])' \
            2>/dev/null || true)
    done
    run_seconds+=("$stage=$((SECONDS - started))")
    flwr_op log "$run_id" pv4fad --show > "$out/logs/run-$stage.log" 2>&1 || true
    say "run $run_id ($stage): $status after $((SECONDS - started)) s"
    if [[ $status != finished:completed ]]; then
        # The coordinator's one-line cause, not Flower's traceback around it.
        cause=$(grep -h -o "pv4fad: error: .*" "$out/logs/run-$stage.log" 2>/dev/null | tail -n 1)
        say "logs in $out/logs"
        say "run $run_id ($stage) failed: ${cause:-no cause logged by the coordinator; see $out/logs/run-$stage.log}"
        exit 3
    fi
done

# -- what an auditor does: merge every party's own ledger, then `pv4fad audit` ---------------
"$py" - "$out/run" <<'PY'
import shutil, sys
from pathlib import Path
from federation.transcript import merge_ledgers
run = Path(sys.argv[1])
ledgers = sorted(run.glob("parties/*/ledger.jsonl")) + sorted(run.glob("coordinator/ledger.jsonl"))
merge_ledgers(ledgers, run / "ledger.jsonl")
predictions = run / "parties" / "swift" / "test" / "predictions.csv"
if predictions.exists():
    shutil.copyfile(predictions, run / "predictions.csv")
PY
# `pv4fad audit` exits 1 when a privacy check fails; that is reported, not hidden.
audit_rc=0
"$venv/bin/pv4fad" audit "$out/run" --json > "$out/audit.json" || audit_rc=$?
[[ $audit_rc -le 1 ]] || { say "pv4fad audit failed (exit $audit_rc)"; exit 1; }
"$py" - "$out" "$scenario" "$parties" "$insecure" "$audit_rc" "${run_ids[*]}" \
    "${run_seconds[*]}" <<'PY'
import json, sys
out, scenario, parties, insecure, audit_rc, runs, seconds = sys.argv[1:]
print(json.dumps({"out": out, "scenario": scenario, "parties": parties.split(","),
                  "tls": insecure == "0", "supernode_auth": insecure == "0",
                  "run_ids": runs.split(), "audit": f"{out}/audit.json",
                  "run_seconds": {k: int(v) for k, v in (x.split("=") for x in seconds.split())},
                  "audit_checks_pass": audit_rc == "0"}))
PY
