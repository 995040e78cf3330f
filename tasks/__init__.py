"""Thin Prefect task wrappers over ruinstruct's domain functions: retries, caching, tags, artifacts."""
