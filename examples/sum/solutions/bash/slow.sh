#!/usr/bin/env bash
# Sum: time limit -- correct, but recomputes every prefix sum in pure bash: O(N^2).
set -euo pipefail
read -r n
read -r -a a
prefix=0
for ((i = 0; i < n; i++)); do
    p=0
    for ((j = 0; j <= i; j++)); do
        p=$((p + a[j]))
    done
    prefix=$p
done
echo "$prefix"
