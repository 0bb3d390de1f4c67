#!/usr/bin/env bash
# Sum: memory limit -- awk doubles a string up to 512 MiB (touching every
# page; the last concatenation holds ~768 MiB) before answering.
set -euo pipefail
exec awk -v RS='[[:space:]]+' '
BEGIN { b = "x"; while (length(b) < 512 * 1024 * 1024) b = b b }
NR == 1 { n = $1; next }
NR <= n + 1 { s += $1 }
END { printf "%.0f\n", s + length(b) - 512 * 1024 * 1024 }'
