#!/usr/bin/env bash
# The project's test command (as in README.md): install with the test and train extras, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: PostgreSQL with PostGIS under stac-fastapi-pgstac and titiler-pgstac, and Node.js
# with Chromium for STAC Browser, built from its npm package and looked at headless.
apt_install() {  # apt_install WHAT PACKAGE...
    local what=$1 as_root=()
    shift
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then as_root=(sudo); fi
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get install -y -q "$@" >/dev/null \
        || { "${as_root[@]}" apt-get update -q >/dev/null && "${as_root[@]}" apt-get install -y -q "$@" >/dev/null; } \
        || echo "ci/test.sh: could not install $what; the tests that need it will fail" >&2
}
if ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then
    apt_install "PostgreSQL with PostGIS" postgresql postgresql-15-postgis-3
fi
# (separately: where Node.js comes with its own npm, Debian's npm package would conflict with it)
if ! command -v npm >/dev/null; then apt_install "Node.js" nodejs npm; fi
if ! command -v chromium >/dev/null; then apt_install "Chromium" chromium; fi

# the train extra brings PyTorch (pinned to the CPU build this machine's pip finds) for the fine-tuning tests
python3 -m pip install --quiet --disable-pip-version-check ".[test,train]"
# a package of the test extra that cannot be imported fails its tests here instead of skipping them
export KAPPAMASK_TESTS_STRICT=1
python3 -m pytest -q "$@"
