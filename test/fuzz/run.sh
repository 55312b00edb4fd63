#!/usr/bin/env bash
# A libFuzzer campaign on the NVMe/TCP codec and the builtin target (test/fuzz/README.md).
# Usage: test/fuzz/run.sh [--seconds N] [--target codec|nvmf|all] [--dir DIR] [--jobs N]
#   --seconds  per target (default 600)
#   --dir      corpus, seeds and findings; kept between runs so a campaign resumes
#              (default /var/tmp/spdk-node-fuzz)
# Exits 0 when no target found anything; a finding is left in DIR/findings/<target>/ and the
# run exits 1. Needs `npx tsc -p .` first (the seeds are recorded by dist/test/helpers).
set -uo pipefail
cd "$(dirname "$0")/../.."
seconds=600
which=all
dir=/var/tmp/spdk-node-fuzz
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --target) which=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds N] [--target codec|nvmf|all] [--dir DIR]" >&2; exit 2 ;;
  esac
done
bash test/fuzz/build.sh build-fuzz || exit 2
mkdir -p "$dir"
if [ ! -s "$dir/seeds/setup.bin" ]; then
  node dist/test/helpers/fuzz-corpus.js "$dir/seeds" || exit 2
fi

failed=0
run() { # run NAME SEEDS [env...]
  local name=$1 seeds=$2
  shift 2
  local corpus="$dir/corpus/$name" findings="$dir/findings/$name"
  mkdir -p "$corpus" "$findings"
  cp -n "$seeds"/* "$corpus"/ 2>/dev/null
  echo "fuzz: $name for ${seconds}s (corpus $corpus)"
  env "$@" "build-fuzz/$name" "$corpus" -max_total_time="$seconds" -max_len=65536 -timeout=30 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/" >"$dir/$name.log" 2>&1
  local rc=$?
  grep -E 'INITED|DONE  |stat::number_of_executed_units|stat::peak_rss_mb' "$dir/$name.log"
  if [ $rc -ne 0 ]; then
    echo "fuzz: $name FOUND A PROBLEM (exit $rc): see $dir/$name.log and $findings/"
    grep -E 'ERROR|invariant|nvmf target fuzz:' "$dir/$name.log" | head -5
    failed=1
  fi
}
case $which in
  codec | all) run nvme_tcp_codec_fuzz "$dir/seeds/codec" ;;
esac
case $which in
  nvmf | all) run nvmf_target_fuzz "$dir/seeds/nvmf" NVMF_FUZZ_SETUP="$dir/seeds/setup.bin" ;;
esac
exit $failed
