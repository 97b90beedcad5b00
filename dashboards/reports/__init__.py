"""Supervisors' reports: daily rollups (services), reads over them (selectors), the pages and
CSV (views), and the weekly bottleneck summary (weekly)."""
