"""supplymeter core: config and supplier registry, record types, errors, the InfluxDB client.

The core imports none of the service packages (collector, processing, dashboards,
simulators, deploy); only :mod:`supplymeter.cli` wires them together, importing lazily.
"""

__version__ = "0.1.0"
