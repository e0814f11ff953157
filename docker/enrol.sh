#!/bin/sh
# Enrol every site's SuperNode key with the SuperLink (before the SuperNodes start).
set -eu
. /usr/local/bin/connect.sh
for key in /fed/coordinator/node-keys/*.pub; do
  flwr supernode register "$key" organfed --format json || echo "(already registered: $key)"
done
