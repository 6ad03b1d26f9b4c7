#!/usr/bin/env bash
# Frozen .pb -> .om with ATC (or the portable ONNX model where atc is absent): a real ATC
# command line, verbatim, on any frozen .pb (flags the line leaves out come from the signature).
# usage:   bash convert/atc.sh --model=model.pb --framework=3 --output=model --soc_version=Ascend310 \
#              --input_shape="images:1,224,224,3" --out_nodes="logits:0" [any atc flag] [--dry-run] [--force]
# Runs python -m convert.atc with the repo's Python ($PYTHON, else .venv/bin/python, else python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m convert.atc "$@"
