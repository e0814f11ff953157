#!/bin/sh
# One-shot set-up of the compose federation: every party's credentials and data, each in its own
# volume. On real machines each party runs its own part of this (see docs/deployment.md) and only
# public files (identity.json, node-key.pub, ca.pem) travel between them.
set -eu
if [ -f /fed/coordinator/keys/identity.json ]; then echo "already set up"; exit 0; fi
SITES="hospital software-house bank"
organfed federation tls --out /fed/tls --host superlink --host localhost --host 127.0.0.1
organfed keys new --name coordinator --out /fed/coordinator/keys
organfed federation app --out /fed/coordinator/app
organfed demo-data --out /fed/coordinator/corpora > /fed/coordinator/demo-data.json
for site in $SITES; do
  organfed keys new --name "$site" --out "/fed/$site/keys"
  organfed trust enrol /fed/coordinator/trust "/fed/$site/keys/identity.json"
  organfed trust enrol "/fed/$site/trust" /fed/coordinator/keys/identity.json
  organfed federation node-key --out "/fed/$site/node-key"
  mkdir -p /fed/coordinator/node-keys "/fed/$site/data"
  cp "/fed/$site/node-key.pub" "/fed/coordinator/node-keys/$site.pub"
done
cp /fed/coordinator/corpora/clinical/train.txt /fed/hospital/data/
cp /fed/coordinator/corpora/code/train.txt /fed/software-house/data/
cp /fed/coordinator/corpora/finance/train.txt /fed/bank/data/
chown -R 10001:10001 /fed/tls /fed/coordinator /fed/hospital /fed/software-house /fed/bank
echo "set-up done"
