"""Meter and gateway simulator (stand-in for the hardware), with a ground-truth ledger."""
