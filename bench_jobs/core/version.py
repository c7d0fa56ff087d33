"""The package version, in core so that the Redis client can name it without importing the package root."""

__version__ = "0.1.0"
