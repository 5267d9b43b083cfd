"""Kibana saved objects (data views, dashboards, searches) and their provisioner."""
