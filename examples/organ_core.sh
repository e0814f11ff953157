#!/usr/bin/env bash
# The organ core by hand: build a tiny model of each family, extract an organ, put it back
# (replace: identical logits) and insert it (a deeper model), then measure perplexity.
# Run from the repository root after `make install`.
set -euo pipefail
bin=.venv/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for family in gpt2 llama gpt-oss; do
  echo "== $family"
  $bin/organfed tiny-model --family "$family" --out "$work/$family"
  $bin/organfed extract --model "$work/$family" --out "$work/$family.organ.safetensors"
  $bin/organfed transplant --model "$work/$family" --organ "$work/$family.organ.safetensors" \
    --mode insert --position 0 --out "$work/$family-recipient"
  $bin/organfed perplexity --model "$work/$family-recipient" --data README.md --max-tokens 4000
done
