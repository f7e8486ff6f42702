#!/usr/bin/env bash
# The project's test command (as in README.md): install with the test extra, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# The STAC API tests start PostgreSQL with PostGIS (Debian packages) under stac-fastapi-pgstac.
if ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then
    as_root=()
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then as_root=(sudo); fi
    packages=(postgresql postgresql-15-postgis-3)
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get install -y -q "${packages[@]}" >/dev/null \
        || { "${as_root[@]}" apt-get update -q >/dev/null && "${as_root[@]}" apt-get install -y -q "${packages[@]}" >/dev/null; } \
        || echo "ci/test.sh: could not install PostgreSQL with PostGIS; the STAC API tests will fail" >&2
fi

python3 -m pip install --quiet --disable-pip-version-check ".[test]"
# a package of the test extra that cannot be imported fails its tests here instead of skipping them
export KAPPAMASK_TESTS_STRICT=1
python3 -m pytest -q "$@"
