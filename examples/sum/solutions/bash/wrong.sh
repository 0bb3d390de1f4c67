#!/usr/bin/env bash
# Sum: wrong answer -- off by one, the last number is never added.
set -euo pipefail
exec awk -v RS='[[:space:]]+' 'NR == 1 { n = $1; next } NR <= n { s += $1 } END { printf "%.0f\n", s }'
