"""qcat: a distributed astronomical catalog database with IVOA data access services."""

__version__ = "0.1.0"
