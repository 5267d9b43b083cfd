"""The Faust app: windows, anomaly scores, rules, alert state, indexing and alert routing."""
