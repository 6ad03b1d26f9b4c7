#!/usr/bin/env bash
# Frozen rebar .pb -> .om with ATC (or the portable ONNX model where atc is absent).
# example: bash convert/atc_rebar.sh --model runs/demo/rebar/model/rebar.pb --output runs/demo/rebar/model/rebar --soc_version Ascend910
# With no arguments it converts the demo's model (after `make demo`). See --help.
exec bash "$(dirname "${BASH_SOURCE[0]}")/_atc_shim.sh" rebar "$@"
