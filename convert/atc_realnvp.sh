#!/usr/bin/env bash
# Preset of convert/atc.sh for the demo's RealNVP: with no --model it converts
# runs/demo/realnvp/model/realnvp.pb (after `make demo`), force_fp32 unless --precision_mode
# says otherwise. Every other flag as atc.sh.
# example: bash convert/atc_realnvp.sh --model runs/demo/realnvp/model/realnvp.pb --output runs/demo/realnvp/model/realnvp --soc_version Ascend910
exec bash "$(dirname "${BASH_SOURCE[0]}")/atc.sh" --default-model runs/demo/realnvp/model/realnvp.pb --precision_mode=force_fp32 "$@"
