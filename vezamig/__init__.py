"""vezamig: a raw-SQL PostgreSQL migration runner that refuses to lose data."""

__version__ = "0.1.0"
