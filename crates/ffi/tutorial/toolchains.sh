#!/usr/bin/env bash
# Installs the toolchains the Kotlin and Swift tutorial tests need, cached outside the
# clone (under ~/.cache/tidesync, or $TIDESYNC_CACHE) so repeated CI runs reuse them.
#
#   toolchains.sh kotlin   -> prints the kotlinc path (npm `kotlin-compiler`, pinned) and
#                             installs Debian's libjna-java (the JNA the generated code loads)
#   toolchains.sh swift    -> prints the root of a Debian trixie chroot with `swiftlang`
#                             (debootstrap --variant=minbase; run it as root)
#
# Exits non-zero with a message on stderr when a toolchain cannot be installed.
set -euo pipefail

KOTLIN_VERSION=2.4.20
CACHE="${TIDESYNC_CACHE:-$HOME/.cache/tidesync}"
MIRROR="${TIDESYNC_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$CACHE"

apt_ready() {
    if ! dpkg -s "$@" >/dev/null 2>&1; then
        # apt-get update once per cache (a stale list just makes install fail, then we retry).
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; then
            apt-get update -q >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
        fi
    fi
}

kotlin() {
    local dir="$CACHE/kotlin-compiler-$KOTLIN_VERSION"
    if [ ! -x "$dir/node_modules/kotlin-compiler/bin/kotlinc" ]; then
        rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
        (cd "$dir.tmp" && npm install --no-save --no-package-lock --silent \
            "kotlin-compiler@$KOTLIN_VERSION" >&2)
        chmod +x "$dir.tmp"/node_modules/kotlin-compiler/bin/* 2>/dev/null || true
        rm -rf "$dir" && mv "$dir.tmp" "$dir"
    fi
    apt_ready libjna-java
    echo "$dir/node_modules/kotlin-compiler/bin/kotlinc"
}

swift() {
    local root="$CACHE/swift-trixie"
    if [ ! -e "$root/.tidesync-ready-2" ]; then
        apt_ready debootstrap
        if [ ! -e "$root/.debootstrapped" ]; then
            rm -rf "$root"
            debootstrap --variant=minbase trixie "$root" "$MIRROR" >&2
            touch "$root/.debootstrapped"
        fi
        unshare --mount sh -c "
            mount -t proc proc '$root/proc' &&
            chroot '$root' sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends swiftlang libc6-dev ca-certificates'
        " >&2
        touch "$root/.tidesync-ready-2"
    fi
    echo "$root"
}

case "${1:-}" in
    kotlin) kotlin ;;
    swift) swift ;;
    *) echo "usage: $0 kotlin|swift" >&2; exit 2 ;;
esac
