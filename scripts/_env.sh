# Shared by scripts/run and scripts/test: make .venv and install the project (once per pyproject change).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
kapi_install() {  # kapi_install EXTRAS
  local stamp=".venv/.kapi-installed-$1-$(cksum pyproject.toml | cut -d' ' -f1)"
  if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q -e ".[$1]"
    touch "$stamp"
  fi
}
