#!/bin/sh
# SPDX-License-Identifier: MIT
# `make fuzz` must leave the source tree as it found it: new corpus
# entries and crash artifacts go under build/fuzz/, never into
# tests/fuzz/corpus or the top directory. Runs a short fuzz session.
#   tests/fuzz/tree_untouched.sh [SECONDS]   (default 10)
set -eu
cd "$(dirname "$0")/../.."
secs=${1:-10}
snapshot() {
    # every file under the tree except build/, with its content hash
    find . -path ./build -prune -o -path ./.git -prune -o -type f -print |
        LC_ALL=C sort | xargs sha1sum
}
before=$(mktemp); after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
snapshot > "$before"
make fuzz FUZZ_SECONDS="$secs" >/dev/null 2>&1 || {
    echo "tree_untouched: make fuzz failed" >&2; exit 1; }
snapshot > "$after"
if ! diff -u "$before" "$after" > /dev/null; then
    echo "tree_untouched: make fuzz changed the source tree:" >&2
    diff "$before" "$after" | grep '^[<>]' | head -20 >&2
    exit 1
fi
echo "tree_untouched: 1 passed, 0 failed"
