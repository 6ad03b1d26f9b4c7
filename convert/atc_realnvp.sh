#!/usr/bin/env bash
# Frozen realnvp .pb -> .om with ATC (or the portable ONNX model where atc is absent).
# example: bash convert/atc_realnvp.sh --model runs/demo/realnvp/model/realnvp.pb --output runs/demo/realnvp/model/realnvp --soc_version Ascend910
# With no arguments it converts the demo's model (after `make demo`). See --help.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m convert.atc --kind realnvp "$@"
