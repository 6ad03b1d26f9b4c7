#!/usr/bin/env bash
# Preset of convert/atc.sh for the demo's SBN (REBAR): with no --model it converts
# runs/demo/rebar/model/rebar.pb (after `make demo`), force_fp32 unless --precision_mode
# says otherwise. Every other flag as atc.sh.
# example: bash convert/atc_rebar.sh --model runs/demo/rebar/model/rebar.pb --output runs/demo/rebar/model/rebar --soc_version Ascend910
exec bash "$(dirname "${BASH_SOURCE[0]}")/atc.sh" --default-model runs/demo/rebar/model/rebar.pb --precision_mode=force_fp32 "$@"
