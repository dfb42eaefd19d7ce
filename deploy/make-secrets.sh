#!/bin/bash
# Makes what a coordinator on a shared network needs, with openssl: a client token, a
# worker token, a private certificate authority, and the coordinator's certificate
# signed by it for the names workers and clients dial.
#
#   deploy/make-secrets.sh DIR NAME [NAME ...]
#   deploy/make-secrets.sh ~/.gradsweep coord.lab.example 10.0.0.5
#
# NAME: each host name or IP address of the coordinator as the others will write it in
# https://NAME:7070 (a wildcard such as '*.cluster.example' covers a cluster's nodes).
# Writes into DIR (mode 0700): client.token, worker.token (32 random bytes, hex),
# ca.pem and ca.key (the CA: keep ca.key off the coordinator), coordinator.pem and
# coordinator.key. Existing tokens and CA are kept, so running it again with other
# names only issues a new coordinator certificate.
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 DIR NAME [NAME ...]   (NAME: the coordinator's host names and IP addresses)" >&2
    exit 2
fi
dir=$1
shift
umask 077
mkdir -p "$dir"

for role in client worker; do
    if [ ! -s "$dir/$role.token" ]; then
        openssl rand -hex 32 >"$dir/$role.token"
        echo "wrote $dir/$role.token"
    fi
done

if [ ! -s "$dir/ca.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=gradsweep lab CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    echo "wrote $dir/ca.pem (and its key, $dir/ca.key)"
fi

san=""
for name in "$@"; do
    if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
        san+="IP:$name,"
    else
        san+="DNS:$name,"
    fi
done
san=${san%,}

openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$dir/coordinator.key" -out "$dir/coordinator.csr" 2>/dev/null
printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$dir/coordinator.ext"
openssl x509 -req -days 825 -in "$dir/coordinator.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -extfile "$dir/coordinator.ext" -out "$dir/coordinator.pem" 2>/dev/null
rm -f "$dir/coordinator.csr" "$dir/coordinator.ext"
openssl verify -CAfile "$dir/ca.pem" "$dir/coordinator.pem" >/dev/null
echo "wrote $dir/coordinator.pem for $san (and its key, $dir/coordinator.key)"
