"""Celery tasks for orders: thin wrappers that call services."""
