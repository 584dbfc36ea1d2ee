#!/usr/bin/env bash
# One party's own view of a challenge-layout data set, for its own volume.
#
#   deploy/party-data.sh DATA_ROOT PARTY_ID OUT_DIR
#
# Copies scenarios.txt, every <scenario>/<stage>/partitions.json (file names only) and
# only PARTY_ID's own <scenario>/<stage>/PARTY_ID/ folders. On a real deployment each
# party already holds just its own files; this builds that layout from one generated set.
set -euo pipefail

if [[ $# -ne 3 ]]; then
    echo "usage: $0 DATA_ROOT PARTY_ID OUT_DIR" >&2
    exit 2
fi
root=$1 party=$2 out=$3
[[ -f $root/scenarios.txt ]] || { echo "party-data.sh: no $root/scenarios.txt" >&2; exit 2; }
[[ $party =~ ^[A-Za-z0-9_-]+$ ]] || { echo "party-data.sh: bad party id '$party'" >&2; exit 2; }
mkdir -p "$out"
cp "$root/scenarios.txt" "$out/"
found=0
while read -r scenario; do
    [[ -n $scenario ]] || continue
    for stage in train test; do
        src=$root/$scenario/$stage
        [[ -f $src/partitions.json ]] || continue
        mkdir -p "$out/$scenario/$stage"
        cp "$src/partitions.json" "$out/$scenario/$stage/"
        if [[ -d $src/$party ]]; then
            cp -r "$src/$party" "$out/$scenario/$stage/"
            found=1
        fi
    done
done < "$root/scenarios.txt"
[[ $found == 1 ]] || { echo "party-data.sh: $root holds no folder for party '$party'" >&2; exit 2; }
