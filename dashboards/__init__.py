"""Grafana dashboards as code: the dashboards' JSON built from the config and registry
(``model.py``, InfluxQL panels on the measurements of :mod:`supplymeter.store`), the push
through Grafana's HTTP API (``push.py``) and PNG renders of the panels (``render.py``).
"""
