"""The HTTP service (FastAPI): routes, group commit, rate limits."""
