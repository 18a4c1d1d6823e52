"""The web console: the buyer's energy managers and each supplier's plant managers see their
plants live and fix their own data (meter events, bills, silences, month reviews), audited in
the operations database. Served by ``supplymeter console serve``."""
