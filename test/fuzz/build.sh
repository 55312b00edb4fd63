#!/usr/bin/env bash
# Builds the libFuzzer targets of test/fuzz with clang, ASan and UBSan:
#   nvme_tcp_codec_fuzz  the NVMe/TCP PDU codec (native/common/nvme_tcp), both roles
#   nvmf_target_fuzz     the builtin NVMe/TCP target over TCP on 127.0.0.1
# Needs Debian's clang and libclang-rt-14-dev (test-only tools; .ci/run installs them).
# Usage: test/fuzz/build.sh [OUTDIR]   (default build-fuzz; not build/, which node-gyp rebuild
# empties). Rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build-fuzz}
cxx=${CLANGXX:-$(command -v clang++ || command -v clang++-14 || true)}
if [ -z "$cxx" ]; then
  echo "fuzz: clang++ not found: apt-get install clang libclang-rt-14-dev" >&2
  exit 2
fi
flags=(-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -pthread)
codec=(test/fuzz/nvme_tcp_codec_fuzz.cc native/common/nvme_tcp/pdu.cc native/common/crc32c.cc)
target=(test/fuzz/nvmf_target_fuzz.cc native/builtin/reactor/reactor.cc native/builtin/bdev/bdev.cc
  native/builtin/bdev/malloc.cc native/common/huge_map.cc native/builtin/nvmf/target.cc native/builtin/nvmf/tcp_conn.cc
  native/common/nvme_tcp/pdu.cc native/common/crc32c.cc)
mkdir -p "$out"

# build NAME SOURCES...: skipped when the binary is newer than every source and header.
build() {
  local name=$1
  shift
  local bin="$out/$name" newest
  newest=$(find "$@" native/common native/builtin/nvmf native/builtin/bdev native/builtin/reactor \
    -newer "$bin" -print -quit 2>/dev/null || true)
  if [ -x "$bin" ] && [ -z "$newest" ]; then
    return 0
  fi
  echo "fuzz: building $bin"
  "$cxx" "${flags[@]}" -o "$bin.tmp" "$@" && mv "$bin.tmp" "$bin"
}

build nvme_tcp_codec_fuzz "${codec[@]}" &
p1=$!
build nvmf_target_fuzz "${target[@]}" &
p2=$!
rc=0
wait $p1 || rc=1
wait $p2 || rc=1
exit $rc
