#!/usr/bin/env bash
# Every issue-#7 target, side by side, on one build, in one run (about 6 minutes
# on a quiet 2-core machine). Results: OUT/<workload>.json (a JSON line per run)
# and OUT/<workload>.log (the human summary; the table after "figure (mean)").
#
#   SKIFF_BIN=./skiff-bin TANSU_BIN=/root/.cache/tansu/bin/tansu \
#   BENCH_BIN=./skiff-bench-bin OUT=/tmp/targets benches/targets.sh
set -euo pipefail
: "${SKIFF_BIN:?release build of skiff}" "${TANSU_BIN:?tansu 0.6.0 with dynostore,libsql}"
B=${BENCH_BIN:-skiff-bench}
OUT=${OUT:-/tmp/skiff-targets}
mkdir -p "$OUT"
run() {
    local name=$1
    shift
    echo "== $name $(date -u +%FT%TZ): $*" | tee -a "$OUT/index"
    env -u TANSU_BIN "$B" compare --skiff-bin "$SKIFF_BIN" "$@" >"$OUT/$name.json" 2>"$OUT/$name.log"
    sed -n '/figure (mean)/,$p' "$OUT/$name.log"
}
P=(--producers 1 --record-size 1024 --partitions 8 --acks all --linger-ms 5 --batch-size 1048576)
run produce --tansu-bin "$TANSU_BIN" --rounds 3 --peers memory,sqlite -- produce --duration 10s "${P[@]}"
run latency --tansu-bin "$TANSU_BIN" --rounds 2 --peers memory -- latency --rate 5000 --duration 15s
run fleet --tansu-bin "$TANSU_BIN" --rounds 2 --peers memory -- fleet --vehicles 100000 --interval 10s --duration 15s
run consume --tansu-bin "$TANSU_BIN" --rounds 2 --peers memory -- consume --backlog-mb 500
# tansu's engines cannot be restarted with their data, and the 10 GB run is about Skiff's RSS.
run catchup --rounds 2 --restart-before-read -- catchup --backlog-mb 2000
run rss10g -- produce --messages 10000000 "${P[@]}"
