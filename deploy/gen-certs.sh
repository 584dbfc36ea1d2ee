#!/usr/bin/env bash
# TLS material for the SuperLink (run by the coordinator's operator).
#
#   deploy/gen-certs.sh OUT_DIR [HOSTNAME_OR_IP ...]
#
# Writes OUT_DIR/ca.key (the CA's key: keep it offline, it is needed only to re-issue),
# OUT_DIR/ca.crt (public: give it to every party and to whoever runs `flwr`),
# OUT_DIR/server.key and OUT_DIR/server.crt (only on the SuperLink). The server
# certificate names localhost, 127.0.0.1, `superlink` (the compose service name) and every
# extra HOSTNAME_OR_IP given, so SuperNodes can verify the name they dial.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 OUT_DIR [HOSTNAME_OR_IP ...]" >&2
    exit 2
fi
out=$1
shift
command -v openssl >/dev/null || { echo "gen-certs.sh: openssl is not installed" >&2; exit 2; }
if [[ -e "$out/ca.key" || -e "$out/server.key" ]]; then
    echo "gen-certs.sh: $out already holds keys; refusing to overwrite them" >&2
    exit 2
fi
mkdir -p "$out"
umask 077  # private keys readable by their owner only

sans="DNS:localhost,IP:127.0.0.1,DNS:superlink"
for name in "$@"; do
    if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
        sans+=",IP:$name"
    else
        sans+=",DNS:$name"
    fi
done

# P-384 keys: 192-bit security, above the 128-bit target for all key material.
openssl ecparam -name secp384r1 -genkey -noout -out "$out/ca.key"
openssl req -x509 -new -key "$out/ca.key" -sha384 -days 825 -subj "/CN=pv4fad federation CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$out/ca.crt" 2>/dev/null

openssl ecparam -name secp384r1 -genkey -noout -out "$out/server.key"
openssl req -new -key "$out/server.key" -sha384 -subj "/CN=superlink" -out "$out/server.csr"
ext=$(mktemp)
trap 'rm -f "$ext"' EXIT
printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" "subjectAltName=$sans" > "$ext"
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -CAcreateserial -sha384 -days 825 -extfile "$ext" -out "$out/server.crt" 2>/dev/null
rm -f "$out/server.csr" "$out/ca.srl"
chmod 644 "$out/ca.crt" "$out/server.crt"
echo "TLS material in $out (server names: $sans)" >&2
