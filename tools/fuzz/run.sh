#!/usr/bin/env bash
# Builds the wire fuzz target (tools/fuzz/frame_fuzz.c) with clang's
# libFuzzer plus AddressSanitizer and UBSan, then runs it for a fixed time.
#
#   tools/fuzz/run.sh [SECONDS]      default 30
#
# The seed corpus is tools/fuzz/corpus/ (read only); inputs libFuzzer finds
# go to $WEFT_FUZZ_DIR/corpus (default build-fuzz/), crash reproducers to
# $WEFT_FUZZ_DIR/crash-*. Exits non-zero if the build fails or the fuzzer
# finds a crash, a leak or a sanitizer report. Reproduce one with
#   build-fuzz/frame_fuzz build-fuzz/crash-<hash>
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
secs="${1:-30}"
out="${WEFT_FUZZ_DIR:-$root/build-fuzz}"

pkgs="clang libclang-rt-14-dev nanopb protobuf-compiler libnanopb-dev"
for tool in clang protoc protoc-gen-nanopb; do
  command -v "$tool" >/dev/null || {
    echo "tools/fuzz/run.sh: $tool not found (apt-get install $pkgs)" >&2
    exit 2
  }
done
# libFuzzer's runtime (and ASan's, UBSan's) is in libclang-rt-14-dev on
# Debian 12, which clang only recommends (through libclang-common-14-dev), so
# an install with --no-install-recommends lacks it: say so here rather than
# fail at link time.
rt="$(clang --print-runtime-dir)/libclang_rt.fuzzer-$(uname -m).a"
[ -f "$rt" ] || {
  echo "tools/fuzz/run.sh: $rt not found (apt-get install $pkgs)" >&2
  exit 2
}

mkdir -p "$out/gen" "$out/corpus"
# The same generator invocation as proto/CMakeLists.txt.
protoc --plugin=protoc-gen-nanopb="$(command -v protoc-gen-nanopb)" \
  -I"$root/proto" --nanopb_opt=-I"$root/proto" \
  --nanopb_opt=--error-on-unmatched \
  --nanopb_out="$out/gen" weft.proto

clang -std=c17 -g -O1 -Wall -Wextra -Werror \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$out/gen" -I"$root/proto" -I"$root/include" \
  "$root/tools/fuzz/frame_fuzz.c" "$root/proto/frame.c" \
  "$root/proto/codec.c" "$root/proto/item.c" "$out/gen/weft.pb.c" \
  -lprotobuf-nanopb -o "$out/frame_fuzz"

echo "fuzzing for ${secs}s (corpus: $out/corpus + tools/fuzz/corpus)"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
"$out/frame_fuzz" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
  -max_len=8192 -print_final_stats=1 -artifact_prefix="$out/" \
  "$out/corpus" "$root/tools/fuzz/corpus"
