# Shared body of convert/atc_<kind>.sh: run `python -m convert.atc --kind KIND "$@"` with the
# repo's Python ($PYTHON, else .venv/bin/python, else python3). Not run directly.
set -euo pipefail
kind="$1"; shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m convert.atc --kind "$kind" "$@"
