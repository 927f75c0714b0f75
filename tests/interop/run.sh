#!/usr/bin/env bash
# Interoperability check: what hookline produces must be accepted by
# standard third-party libraries.
#
# 1. installs pinned Python (jwcrypto, standardwebhooks, cryptography) and
#    Node (jose, standardwebhooks) libraries: a venv under ${HOOKLINE_CACHE:-$HOME/.cache/hookline}
#    and `npm ci` here;
# 2. has the `emits_interop_fixtures` unit test write a keygen key pair and a
#    signed, encrypted request into a temporary directory,
#    `emits_rotation_interop_fixtures` the same signed with two secrets (a
#    signing-secret rotation: each must verify it alone), and the
#    `a_real_delivery_is_captured_for_the_interop_checks` integration test
#    write a request that a replica really delivered (this one needs the
#    local broker: `make up`, which `make test` runs first);
# 3. runs check.py and check.mjs against both.
#
# The other direction (hookline opening what jwcrypto and jose produce) is a
# plain unit test on vectors that vectors.py and vectors.mjs regenerate.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${HOOKLINE_CACHE:-$HOME/.cache/hookline}/venv"

# Dependencies first: the fixtures carry a timestamp that the signature
# check only accepts for five minutes.
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
(cd "$here" && npm ci --silent --no-audit --no-fund)

fixtures="$(mktemp -d)"
trap 'rm -rf "$fixtures"' EXIT
(cd "$root" && HOOKLINE_INTEROP_DIR="$fixtures/unit" \
  cargo test --quiet --lib commands::keygen::tests::emits_interop_fixtures -- --exact)
(cd "$root" && HOOKLINE_INTEROP_ROTATION_DIR="$fixtures/rotation" \
  cargo test --quiet --lib commands::keygen::tests::emits_rotation_interop_fixtures -- --exact)
(cd "$root" && HOOKLINE_INTEROP_DELIVERY_DIR="$fixtures/delivery" \
  cargo test --quiet --test it security::a_real_delivery_is_captured_for_the_interop_checks -- --exact)

for kind in unit rotation delivery; do
  echo "interop: $kind fixture"
  "$venv/bin/python" "$here/check.py" "$fixtures/$kind"
  node "$here/check.mjs" "$fixtures/$kind"
done
echo "interop: all checks passed"
