"""Adaptation worker and the built-in model and data."""
