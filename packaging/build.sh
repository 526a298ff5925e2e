#!/usr/bin/env bash
# Build the one-dir program: DIST/dtesync/dtesync (+ _internal/). Runs on the target OS
# (PyInstaller does not cross-compile): Linux here, packaging/build.ps1 on Windows.
#   packaging/build.sh [DIST] [WORK]      defaults: dist/ and build/ at the repo root
# Needs the project installed with its build extra: pip install -e ".[build]"
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIST="${1:-$ROOT/dist}"
WORK="${2:-$ROOT/build}"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c "import PyInstaller" 2>/dev/null || "$PYTHON" -m pip install -q "pyinstaller>=6"
cd "$ROOT"
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$DIST" --workpath "$WORK" packaging/dtesync.spec
"$DIST/dtesync/dtesync" --version
echo "built: $DIST/dtesync (copy the whole folder; see docs/operations.md)"
