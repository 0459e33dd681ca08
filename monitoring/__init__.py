"""Monitoring: the prediction log, drift and Prometheus metrics. May import `ml`, nothing else here."""
