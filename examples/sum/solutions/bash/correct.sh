#!/usr/bin/env bash
# Sum: accepted. A bash loop over 2e6 numbers takes far too long, so awk adds
# them: one record per number (RS is a regex), the first record is N. awk's
# doubles are exact up to 2^53 > 2e15, and %.0f prints them in full (mawk's
# %d stops at 2^31 - 1).
set -euo pipefail
exec awk -v RS='[[:space:]]+' 'NR == 1 { n = $1; next } NR <= n + 1 { s += $1 } END { printf "%.0f\n", s }'
