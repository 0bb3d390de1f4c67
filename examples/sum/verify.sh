#!/usr/bin/env bash
# Compile and run every solution of examples/sum with the commands of
# languages.toml (no evaler sandbox) and check each verdict against
# expected.toml. Needs the runtimes of .ci/install.sh.
#
#   bash examples/sum/verify.sh [--lang KEY]... [--kind KIND]... [--bwrap] [-v]
#
# Ends with "N passed, N failed"; exits non-zero when anything failed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# /usr/bin/python3 (3.11, has tomllib), not whatever python3 is first on PATH.
exec /usr/bin/python3 "$here/verify.py" "$@"
