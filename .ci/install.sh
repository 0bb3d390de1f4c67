#!/usr/bin/env bash
# Install everything evaler's tests need on Debian 12 (bookworm), x86_64.
#
#   sudo bash .ci/install.sh
#
# Idempotent: when every package is already installed it does not touch apt at
# all (no `apt-get update`), it only re-checks the binaries the judge uses.
#
# Every runtime must live in system directories (/usr, /bin, /lib*), because
# the sandbox only exposes those (plus a few /etc files) to untrusted code:
# nothing from /root, /home, /opt or /var is visible inside a box. That is why
# this installs Debian's rustc and python3 even though the build machine has
# rustup and pyenv: the judge uses /usr/bin/rustc and /usr/bin/python3.
#
# The list of judge languages and their Debian packages is languages.toml
# (`packages = [...]` in each [languages.*] table); keep the two in sync —
# crates/evaler-server/tests/languages_toml.rs checks that every package named
# there is installed.
set -euo pipefail

if [[ "$(id -u)" -ne 0 ]]; then
    echo "install.sh: must run as root (apt-get install); try: sudo bash $0" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: apt-get not found; this script targets Debian 12 (bookworm)" >&2
    exit 1
fi

PACKAGES=(
    # shells
    bash
    zsh
    # judge languages (see languages.toml)
    gcc
    g++
    python3
    pypy3
    openjdk-17-jdk-headless
    nodejs
    ruby
    rustc
    golang-go
    mawk
    # interactive C++ kernel: clang-repl (/usr/lib/llvm-16/bin/clang-repl;
    # clang-repl 14 cannot link the standard library's templates)
    clang-tools-16
    # benchmark peer
    bubblewrap
    # tools used by tests and examples/sum/verify.sh
    time
    procps
    iproute2
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
    # "ii " = desired install, currently installed
    if [[ "$status" != ii* ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} > 0)); then
    echo "install.sh: installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${PACKAGES[@]}"
else
    echo "install.sh: all ${#PACKAGES[@]} packages already installed"
fi

# Binaries the judge and the tests call by absolute path. None of them may
# resolve through /etc/alternatives (the sandbox does not expose it).
REQUIRED_BINARIES=(
    /usr/bin/bash
    /usr/bin/zsh
    /usr/bin/gcc
    /usr/bin/g++
    /usr/bin/python3
    /usr/bin/pypy3
    /usr/lib/jvm/java-17-openjdk-amd64/bin/java
    /usr/lib/jvm/java-17-openjdk-amd64/bin/javac
    /usr/bin/node
    /usr/bin/ruby
    /usr/bin/rustc
    /usr/bin/go
    /usr/bin/mawk
    /usr/lib/llvm-16/bin/clang-repl
    /usr/bin/bwrap
    /usr/bin/time
)
fail=0
for bin in "${REQUIRED_BINARIES[@]}"; do
    if [[ ! -x "$bin" ]]; then
        echo "install.sh: missing $bin after install" >&2
        fail=1
    fi
done
# /usr/bin/node may come from a non-Debian nodejs package (e.g. NodeSource's
# repack); any is fine as long as it is a real file under /usr.
if [[ -e /usr/bin/node ]]; then
    node_real="$(readlink -f /usr/bin/node)"
    case "$node_real" in
        /usr/*) ;;
        *)
            echo "install.sh: /usr/bin/node resolves to $node_real, outside /usr" >&2
            fail=1
            ;;
    esac
fi
if ((fail)); then
    exit 1
fi
echo "install.sh: ok"
