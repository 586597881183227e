"""The web view for auditors and operators under ``/ui/`` (docs/web.md)."""
