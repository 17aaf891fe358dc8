#!/bin/sh
# MeshCrypto's X25519 and ChaCha20-Poly1305 against OpenSSL, in the same session.
#
# Builds the speed program against MeshCrypto as a plain release dependency would (no
# MESH_OPTIMIZE, no unsafe flags), then runs `openssl speed` and it alternately, three times,
# and prints each side's best. The public API is measured, so ChaChaPoly's figures include
# allocating the 1 MiB result; OpenSSL's encrypt in place.
#
#   Tests/MeshCryptoTests/Standalone/speed.sh
set -eu
cd "$(dirname "$0")"
swift build -c release --product speed >/dev/null
speed="$(swift build -c release --show-bin-path)/speed"
best() { sort -n | tail -1; }
: >/tmp/meshcrypto-speed.$$
for round in 1 2 3; do
    openssl speed -seconds 2 -evp chacha20-poly1305 -bytes 1048576 2>/dev/null |
        awk '/^ChaCha20-Poly1305/ { sub(/k$/, "", $2); printf "openssl-aead %.0f\n", $2 / 1000 }' >>/tmp/meshcrypto-speed.$$
    openssl speed -seconds 2 ecdhx25519 2>/dev/null |
        awk '/X25519/ { printf "openssl-x25519 %.0f\n", $NF }' >>/tmp/meshcrypto-speed.$$
    "$speed" | awk '{ print $1, $2 }' >>/tmp/meshcrypto-speed.$$
done
for name in x25519 openssl-x25519 chachapoly-seal chachapoly-open openssl-aead; do
    printf '%-16s %s\n' "$name" "$(awk -v n="$name" '$1 == n { print $2 }' /tmp/meshcrypto-speed.$$ | best)"
done
awk '$1 == "x25519" && $2 > x { x = $2 } $1 == "openssl-x25519" && $2 > ox { ox = $2 }
     $1 == "chachapoly-seal" && $2 > s { s = $2 } $1 == "openssl-aead" && $2 > oa { oa = $2 }
     END { printf "ratios: X25519 %.2fx, ChaCha20-Poly1305 seal %.2fx (units: ops/s, MB/s)\n", x / ox, s / oa }' \
    /tmp/meshcrypto-speed.$$
rm -f /tmp/meshcrypto-speed.$$
