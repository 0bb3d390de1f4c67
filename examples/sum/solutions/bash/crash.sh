#!/usr/bin/env bash
# Sum: runtime error -- a typo'd variable name under `set -u`: bash exits 1.
set -euo pipefail
read -r n
sum=$(awk -v RS='[[:space:]]+' '{ s += $1 } END { printf "%.0f\n", s }')
echo "$((summ))"
