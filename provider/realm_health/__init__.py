"""Realm health: the live realm against keycloak_config/, for IT admins and monitoring.

Two halves, one report (`report.py`): the drift, which is what `python -m
keycloak_config.apply` would write now (its own dry-run plan, read through the read-only
`umpass-realm-monitor` account: `drift.py`), and the settings a university must keep, each
checked live with why it matters and how to repair it (`checks.py`). The report is shown
to `activation-admin` staff (`views.py`), served as JSON and as Prometheus gauges behind
the metrics token (`metrics.py`), and checked on a schedule by `umpass realm-check`
(`command.py`), which emails when new drift appears (`alert.py`).
"""
