#!/usr/bin/env bash
# Frozen realnvp .pb -> .om with ATC (or the portable ONNX model where atc is absent).
# example: bash convert/atc_realnvp.sh --model runs/demo/realnvp/model/realnvp.pb --output runs/demo/realnvp/model/realnvp --soc_version Ascend910
# With no arguments it converts the demo's model (after `make demo`). See --help.
exec bash "$(dirname "${BASH_SOURCE[0]}")/_atc_shim.sh" realnvp "$@"
