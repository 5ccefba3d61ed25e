#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) each and prints libFuzzer's summary.
#
#   fuzz/run.sh [SECONDS]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain RUSTC_BOOTSTRAP=1
# unlocks the nightly flags cargo-fuzz passes (sanitizer, coverage). New inputs go to
# fuzz/target/corpus/<target> (ignored by git); the committed seeds in fuzz/corpus/<target>
# are only read. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-30}
export RUSTC_BOOTSTRAP=1
status=0
for target in pktline receive_pack classify policy_yaml fast_forward protected_paths api_rest api_graphql lfs_batch head_scan pushed_pack tunnel_hello; do
    mkdir -p "target/corpus/$target"
    echo "== $target (${seconds}s)"
    if ! cargo fuzz run "$target" "target/corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 2>"target/$target.log"; then
        status=1
        echo "!! $target failed, see fuzz/target/$target.log and fuzz/artifacts/$target/"
    fi
    grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done [0-9]+ runs)' \
        "target/$target.log" || tail -20 "target/$target.log"
done
exit $status
