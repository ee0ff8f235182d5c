"""Reusable test helpers (loopback HTTP server, fixture builders); never imported by the package."""
