#!/usr/bin/env bash
# The project's test command (as in README.md): install with the test extra, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check ".[test]"
python3 -m pytest -q "$@"
