"""Prefect flows: wiring only (see tasks/ for the task wrappers, src/ruinstruct for the logic)."""
