"""Scheduled jobs: rollups, emissions and scope-3 allocation, exports; emission-factor data."""
