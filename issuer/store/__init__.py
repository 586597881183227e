"""Durable records: the audit store, its schema and migrations."""
