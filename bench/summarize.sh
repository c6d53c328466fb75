#!/bin/sh
# bench/summarize.sh - medians of benchmark result lines.
#
#   bench/summarize.sh [FILE...]      (or lines on stdin)
#
# Reads lines such as
#   bench=pingpong peer=weft cfg=w1 n=1000000 secs=0.06 rate=16671604 ...
# and prints ONE line per (bench, peer, cfg): the run with the median rate
# (its secs and extra fields as printed), then runs=K rate_min=... rate_max=...
# spread=(max-min)/median. For an even count the lower median is taken. Same
# output as shared/bench-peers/common/summarize.sh; POSIX sh, awk and sort.
awk '
/^bench=/ {
  key = ""; rate = ""
  for (i = 1; i <= NF; i++) {
    split($i, kv, "=")
    if (kv[1] == "bench" || kv[1] == "peer" || kv[1] == "cfg") key = key " " $i
    if (kv[1] == "rate") rate = kv[2]
  }
  if (rate != "") printf "%s\t%s\t%s\n", key, rate, $0
}' "$@" | LC_ALL=C sort -t '	' -k1,1 -k2,2g | awk -F '\t' '
function flush(   m) {
  if (cnt == 0) return
  m = int((cnt + 1) / 2)
  printf "%s runs=%d rate_min=%s rate_max=%s spread=%.1f%%\n", lines[m], cnt,
         rates[1], rates[cnt], (rates[m] > 0 ? 100 * (rates[cnt] - rates[1]) / rates[m] : 0)
}
{
  if ($1 != cur) { flush(); cur = $1; cnt = 0 }
  cnt++; rates[cnt] = $2; lines[cnt] = $3
}
END { flush() }'
