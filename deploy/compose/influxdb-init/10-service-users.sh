#!/bin/bash
# Least privilege for the services (run once, by the influxdb image's first-start setup, which
# exports DOCKER_INFLUXDB_INIT_BUCKET_ID and configures the influx CLI with the admin token).
# Each service gets its own v1-compatible user on the one bucket, which supplymeter speaks with
# username + SUPPLYMETER_INFLUXDB_PASSWORD:
#   collector  write        (readings, rejections, gateway status, its stats)
#   scheduler  read + write (rollups, emissions, exports' monthly totals, alerts)
#   grafana    read
set -euo pipefail
bucket="${DOCKER_INFLUXDB_INIT_BUCKET_ID:?the influxdb image sets it during setup}"
org="${DOCKER_INFLUXDB_INIT_ORG}"
influx v1 auth create --org "$org" --username collector \
    --password "${INFLUXDB_COLLECTOR_PASSWORD:?}" --write-bucket "$bucket" \
    --description "supplymeter collector: write only"
influx v1 auth create --org "$org" --username scheduler \
    --password "${INFLUXDB_SCHEDULER_PASSWORD:?}" --read-bucket "$bucket" --write-bucket "$bucket" \
    --description "supplymeter scheduler: read and write"
influx v1 auth create --org "$org" --username grafana \
    --password "${INFLUXDB_GRAFANA_PASSWORD:?}" --read-bucket "$bucket" \
    --description "Grafana: read only"
