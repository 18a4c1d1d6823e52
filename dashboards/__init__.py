"""Grafana dashboards as code.

Not built yet: the dashboards issue adds the dashboard models, the datasource, the push
through Grafana's HTTP API and the rendering. The measurements they will query are listed in
:mod:`supplymeter.schema`.
"""
