#!/usr/bin/env bash
# Create .venv with m3e installed. `bash scripts/setup.sh test` adds the test tools.
# torch: any 2.4-2.14 works; 2.13.0 is pinned here because this machine installs its CPU build from
# local disk in seconds (elsewhere pip fetches it from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
.venv/bin/python -m pip install -q -e ".${extras}"
