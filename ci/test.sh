#!/usr/bin/env bash
# The project's test command (as in README.md): install with the test extra, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check ".[test]"
# a package of the test extra that cannot be imported fails its tests here instead of skipping them
export KAPPAMASK_TESTS_STRICT=1
python3 -m pytest -q "$@"
