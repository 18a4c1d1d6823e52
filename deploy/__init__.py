"""Local stack (Mosquitto + InfluxDB as child processes); later: compose, ACL generation."""
