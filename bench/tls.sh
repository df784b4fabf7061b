#!/bin/bash
# bench/tls.sh: the cost of TLS. `chanq loadtest` with 8
# producers and 8 consumers against the plain and the TLS listener of the
# same chanqd (--memory), interleaved round by round so that noise from a
# shared machine hits both alike. docs/performance.md ("TLS") has figures.
#   B=BUILD_DIR D=SECONDS ROUNDS=N ARGS="--window 1 --batch 1" bench/tls.sh
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${B:-$SRC/build}; D=${D:-5}; ROUNDS=${ROUNDS:-3}
ARGS=${ARGS:-}
PKI=$(mktemp -d /tmp/chanq-tlsbench-XXXXXX)
trap 'rm -rf "$PKI"' EXIT
ossl() { openssl "$@" >/dev/null 2>&1; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $PKI/ca.key \
    -out $PKI/ca.crt -days 2 -subj "/CN=chanq bench CA"
ossl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $PKI/srv.key \
    -out $PKI/srv.csr -subj "/CN=chanq-bench"
echo "subjectAltName=IP:127.0.0.1" > $PKI/ext
ossl x509 -req -in $PKI/srv.csr -CA $PKI/ca.crt -CAkey $PKI/ca.key -CAcreateserial \
    -out $PKI/srv.crt -days 2 -extfile $PKI/ext
log=$PKI/chanqd.log
$B/daemon/chanqd --memory --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0 \
    --tls-cert $PKI/srv.crt --tls-key $PKI/srv.key 2>"$log" &
dp=$!
sleep 0.5
P=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$log")
T=$(sed -n 's/.*listening on tls:127.0.0.1:\([0-9]*\).*/\1/p' "$log")
for r in $(seq $ROUNDS); do
    echo "== plain round $r"; timeout 120 $B/clients/chanq loadtest --quiet -p 8 -c 8 -d $D $ARGS --server 127.0.0.1:$P 2>&1 | grep -E "cycles|acked|submitted|latency|rate|jobs/s"
    echo "== tls round $r"; timeout 120 $B/clients/chanq loadtest --quiet -p 8 -c 8 -d $D $ARGS --server 127.0.0.1:$T --tls-ca $PKI/ca.crt 2>&1 | grep -E "cycles|acked|submitted|latency|rate|jobs/s"
done
kill $dp; wait $dp || true
