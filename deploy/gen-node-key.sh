#!/usr/bin/env bash
# A SuperNode's authentication key pair (run by each party on its own machine).
#
#   deploy/gen-node-key.sh OUT_DIR PARTY_ID
#
# Writes OUT_DIR/PARTY_ID.key (private: stays on that party's SuperNode) and
# OUT_DIR/PARTY_ID.pub (public, OpenSSH format: send it to the coordinator's operator, who
# registers it with `flwr supernode register`). ECDSA P-384, the curve Flower 1.42 accepts.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 OUT_DIR PARTY_ID" >&2
    exit 2
fi
out=$1
party=$2
if [[ ! $party =~ ^[A-Za-z0-9_-]+$ ]]; then
    echo "gen-node-key.sh: party id '$party' must be letters, digits, '-' or '_'" >&2
    exit 2
fi
command -v ssh-keygen >/dev/null || {
    echo "gen-node-key.sh: ssh-keygen is not installed (package openssh-client)" >&2; exit 2; }
if [[ -e "$out/$party.key" ]]; then
    echo "gen-node-key.sh: $out/$party.key exists; refusing to overwrite it" >&2
    exit 2
fi
mkdir -p "$out"
ssh-keygen -q -t ecdsa -b 384 -N "" -C "pv4fad-$party" -f "$out/$party.key"
mv "$out/$party.key.pub" "$out/$party.pub"
echo "SuperNode key for $party in $out ($party.key private, $party.pub public)" >&2
