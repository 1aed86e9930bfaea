"""Structured, redacting logs (STYLE §13) and, later, metrics."""
