# Sourced by scripts/vexport and scripts/test: makes sure uv exists and the locked environment is installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check "uv==0.13.9" \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "uv==0.13.9"
  export PATH="$HOME/.local/bin:$PATH"
fi
uv sync --frozen --quiet
