#!/bin/sh
# Start this site's SuperNode: TLS to the SuperLink, authenticated with the site's node key.
set -eu
base=$(python -c 'from organfed.shared.demo.base_model import demo_base_dir; print(demo_base_dir())')
config=$(organfed federation node-config --site-name "$SITE_NAME" --model-dir "${MODEL_DIR:-$base}" \
  --data /fed/site/data/train.txt --key-dir /fed/site/keys --trust-dir /fed/site/trust --state-dir /fed/site/state)
exec flower-supernode --superlink superlink:9200 --root-certificates /fed/tls/ca.pem \
  --auth-supernode-private-key /fed/site/node-key --node-config "$config" --host 127.0.0.1 --port 9300
