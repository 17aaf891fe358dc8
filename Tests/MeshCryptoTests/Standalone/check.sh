#!/bin/sh
# Constant-time check of MeshCrypto's X25519 and ChaCha20-Poly1305 with valgrind's memcheck.
#
# The taint program takes its secrets (private keys, points, ChaCha keys, messages) from
# malloc'd memory that is never written. Memcheck tracks such "undefined" bits through every
# instruction and reports each conditional jump or move, and each memory address, that depends
# on them. A constant-time implementation produces reports only where a result is deliberately
# made public: the all-zero check of an X25519 shared secret, and the tag verdict of an open.
# Any report elsewhere fails this script.
#
#   Tests/MeshCryptoTests/Standalone/check.sh        (needs valgrind: apt-get install valgrind)
set -eu
cd "$(dirname "$0")"
command -v valgrind >/dev/null || { echo "check.sh: valgrind not found (apt-get install valgrind)"; exit 2; }
swift build -c release --product taint
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$(swift build -c release --show-bin-path)/taint" "$work/taint"
# valgrind 3.19 cannot read the toolchain's DWARF 5; symbols are enough for the reports.
strip --strip-debug "$work/taint"

status=0
for mode in x25519 seal open portable; do
    valgrind --error-limit=no --num-callers=4 "$work/taint" "$mode" >"$work/$mode.log" 2>&1
    # The top frame of every report.
    sites=$(awk '/depends on uninitialised|Use of uninitialised|Syscall param|Invalid read|Invalid write/ {
            getline; sub(/.*: /, ""); sub(/ \(in .*/, ""); print }' "$work/$mode.log" | sort | uniq -c)
    # Mangled Swift names: PrivateKey.sharedSecretFromKeyAgreement(with:), ChaChaPoly.Key.open(...).
    allowed='sharedSecretFrom|cmesh_chachapoly_open|ChaC4PolyO3KeyV4open'
    unexpected=$(printf '%s\n' "$sites" | grep -v -E "$allowed" | grep -v '^$' || true)
    printf '%-9s %s\n' "$mode:" "$(printf '%s' "$sites" | tr -s ' ' | tr '\n' ';' | sed 's/;$//')"
    if [ -n "$unexpected" ]; then
        echo "  secret-dependent branch or address outside the allowed sites:"
        grep -B1 -A6 -E 'depends on uninitialised|Use of uninitialised' "$work/$mode.log" | head -40
        status=1
    fi
done
[ $status -eq 0 ] && echo "check.sh: no secret-dependent branch or address outside the declared ones"
exit $status
