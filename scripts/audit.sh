#!/usr/bin/env bash
# Known-vulnerability check of the pinned runtime and test dependencies (pip-audit,
# which asks PyPI's advisory data). pip-audit gets its own throwaway virtualenv so it
# pins nothing of ours. Where PyPI's JSON API cannot be reached (a machine that only
# sees a package mirror), the audit says so and is skipped: it cannot be done there.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" - <<'PY'
import sys, urllib.request
try:
    # The per-release document is what pip-audit reads (its "vulnerabilities" list).
    urllib.request.urlopen("https://pypi.org/pypi/pip/24.0/json", timeout=10).read(1)
except Exception as exc:  # any failure: no advisory data here
    print(f"pip-audit skipped: PyPI's advisory data is out of reach ({exc}).", file=sys.stderr)
    sys.exit(1)
PY
then
  exit 0
fi

venv="$(mktemp -d)/audit"
"$PYTHON" -m venv "$venv" && "$venv/bin/pip" install -q pip-audit==2.10.1 2>/dev/null || {
  echo "pip-audit could not be installed" >&2; exit 1; }
"$venv/bin/pip-audit" --strict -r requirements.txt -r requirements-dev.txt
status=$?
rm -rf "$(dirname "$venv")"
exit $status
