"""ruinstruct: commercially usable Russian instruction data and models (domain logic, no Prefect)."""

__version__ = "0.1.0"
