# Shared by scripts/run, scripts/test and scripts/docs: make .venv and install the project with the extras given
# (again only when pyproject.toml or the gateway package changed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
kapi_install() {  # kapi_install EXTRAS
  # A regular (not editable) install: the commands run from the repository root, where the working
  # tree's gateway/ and service/ come first on sys.path, and the installed copy is refreshed whenever
  # gateway/ changes.
  local sum
  sum=$( (cat pyproject.toml; find gateway -type f -name '*.py' -o -name '*.lua' | LC_ALL=C sort | xargs cat) | cksum | cut -d' ' -f1)
  local stamp=".venv/.kapi-installed-$1-$sum"
  if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q ".[$1]"
    # Stamps of other extras installed from the same tree stay valid; those from an older tree go.
    find .venv -maxdepth 1 -name '.kapi-installed-*' ! -name "*-$sum" -delete
    touch "$stamp"
  fi
}
