#!/usr/bin/env bash
# Frozen .pb -> .om with ATC (or the portable ONNX model where atc is absent), every flag
# derived from the signature freeze wrote beside the .pb.
# usage:   bash convert/atc.sh --model m/mine.pb --output m/mine [--soc_version Ascend910]
#              [--precision_mode force_fp32|force_fp16|...] [--input_format NHWC] [--dry-run] [--force]
# Runs python -m convert.atc with the repo's Python ($PYTHON, else .venv/bin/python, else python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m convert.atc "$@"
