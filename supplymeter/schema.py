"""What supplymeter stores in InfluxDB: measurements, their tags and fields.

Every part reads and writes through these names, so a dashboard query, a job and the collector
cannot drift apart. Tags are only ever ids from the registry (or a fixed code list), never
free text from the outside world, so the series count stays bounded.

=====================  ===============================  ==========================================
measurement            tags                             fields
=====================  ===============================  ==========================================
reading                supplier, site, meter            seq (int), energy_kwh, energy_export_kwh,
                                                        power_kw, voltage_v, current_a,
                                                        power_factor, volume_m3, production_units
rejected_message       reason[, supplier]               count (int, 1), topic, detail, excerpt,
                                                        payload_bytes (int)
gateway_status         supplier, site, gateway          state ("online"/"offline"), online (bool),
                                                        device_ts_ns (int)
hourly_consumption     supplier, site, meter, carrier   energy_kwh or volume_m3, coverage,
                                                        estimated (bool), flags, readings (int),
                                                        energy_export_kwh (grid meters)
hourly_emissions       supplier, site, meter, carrier,  emissions_kgco2e, factor_value,
                       factor_id                        provisional (bool)
alert                  type, supplier, site, subject,   incident, title, detail, value,
                       event (open/reminder/resolved)   baseline, open (bool)
scope3_monthly         supplier                         location_kgco2e, market_kgco2e,
                                                        allocated_kgco2e, allocated_market_kgco2e,
                                                        share, completeness, provisional (bool)
scope3_pathway         —                                tco2e (the reduction pathway's month)
collector_stats        collector                        counters and gauges of
                                                        :class:`collector.metrics.Snapshot`
=====================  ===============================  ==========================================

Timestamps: ``reading`` at device time (ns); ``rejected_message`` and ``gateway_status`` at the
collector's receipt time (ns, made unique per message); hourly rollups at the start of the UTC
hour they cover.
"""

READING = "reading"
REJECTED = "rejected_message"
GATEWAY_STATUS = "gateway_status"
HOURLY_CONSUMPTION = "hourly_consumption"
HOURLY_EMISSIONS = "hourly_emissions"
COLLECTOR_STATS = "collector_stats"
ALERT = "alert"
SCOPE3_MONTHLY = "scope3_monthly"
SCOPE3_PATHWAY = "scope3_pathway"
