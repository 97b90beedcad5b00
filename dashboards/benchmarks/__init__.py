"""Benchmarks that `manage.py bench` runs, one module each, beside the command that drives them."""
