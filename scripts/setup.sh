#!/usr/bin/env bash
# Makes sure this machine has what hookline's build (and, with `test`, its
# test suite) needs, installing what is missing from the distribution's
# packages. Every make target that builds calls it, so a fresh clone on a
# fresh machine needs no step of its own; on a machine that has everything
# it only looks, in a fraction of a second.
#
#   scripts/setup.sh build   a C/C++ compiler, make and perl: librdkafka
#                            and its TLS, zlib and zstd libraries are built from
#                            source (Cargo.toml), so no development headers
#   scripts/setup.sh test    the above, plus Java 17+ and Maven (the local Kafka
#                            broker and schema registry), Python's venv (Avro,
#                            API and interoperability clients) and Node.js with
#                            npm (interoperability clients)
#
# Rust itself comes from rustup, which this script does not run.
# Installing needs apt-get and root (or sudo without a password); elsewhere
# the script names what is missing and exits 1.
set -euo pipefail

what=${1:-build}
case $what in
build | test) ;;
*)
    echo "setup: unknown set '$what' (expected build or test)" >&2
    exit 1
    ;;
esac

missing=() # Debian packages to install
need() {   # need COMMAND PACKAGE: PACKAGE provides COMMAND
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}

need cc build-essential
need c++ build-essential
need make build-essential
need perl perl
if [[ $what == test ]]; then
    need java openjdk-17-jre-headless
    need mvn maven
    need node nodejs
    need npm npm
    # The secure test broker's throw-away CA and certificates.
    need openssl openssl
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
fi
# One package may provide several commands.
read -r -a missing <<<"$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: Rust (cargo) is required: install it with rustup (https://rustup.rs)" >&2
    exit 1
fi
((${#missing[@]})) || exit 0

sudo=()
if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        echo "setup: missing ${missing[*]}; install them (as root: apt-get install ${missing[*]}) and run again" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: missing ${missing[*]} (Debian package names); install them with this system's package manager and run again" >&2
    exit 1
fi

echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
