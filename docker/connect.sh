#!/bin/sh
# Sourced by enrol.sh and submit.sh: the flwr CLI's connection to the compose SuperLink.
mkdir -p "$FLWR_HOME"
cat > "$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "organfed"

[superlink.organfed]
address = "superlink:9200"
root-certificates = "/fed/tls/ca.pem"
TOML
