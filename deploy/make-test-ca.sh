#!/usr/bin/env bash
# Makes a throw-away CA and a server certificate for testing TLS on Mosquitto.
# usage: deploy/make-test-ca.sh DIR [HOSTNAME]   (HOSTNAME defaults to localhost)
# Writes DIR/ca.crt, DIR/ca.key, DIR/server.crt, DIR/server.key. Never use these in production.
set -euo pipefail
dir=${1:?usage: make-test-ca.sh DIR [HOSTNAME]}
host=${2:-localhost}
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=supplymeter test CA" \
  -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$host" -keyout server.key -out server.csr 2>/dev/null
printf "subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\n" "$host" > san.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
  -extfile san.ext -out server.crt 2>/dev/null
rm -f server.csr san.ext ca.srl
chmod 600 ca.key server.key
echo "test CA and server certificate for $host in $dir"
