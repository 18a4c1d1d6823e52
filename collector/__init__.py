"""MQTT → InfluxDB ingest service (gateway protocol v1)."""
