#!/usr/bin/env bash
# A certificate for a test or a benchmark: a new CA (P-256, 2 days) and a certificate it signs
# for one IP address, written in DIR as NAME-ca.pem, NAME-ca.key, NAME.pem and NAME.key (no
# passphrase). Needs openssl. Never for production: the CA's key sits beside the certificate.
#
#   scripts/test-certificate.sh DIR NAME IP        e.g. scripts/test-certificate.sh /tmp/x gateway 127.0.0.1
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 DIR NAME IP" >&2; exit 2; }
command -v openssl >/dev/null || { echo "missing openssl (apt-get install openssl)" >&2; exit 2; }
cd "$1"
name=$2
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name-ca.key" \
  -out "$name-ca.pem" -days 2 -subj "/CN=$name test CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" \
  -out "$name.csr" -subj "/CN=$name" 2>/dev/null
printf 'subjectAltName = IP:%s\nbasicConstraints = CA:FALSE\n' "$3" > "$name.ext"
openssl x509 -req -in "$name.csr" -CA "$name-ca.pem" -CAkey "$name-ca.key" -CAcreateserial \
  -out "$name.pem" -days 2 -extfile "$name.ext" 2>/dev/null
rm -f "$name.csr" "$name.ext"
