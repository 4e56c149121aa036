"""Frozen action recognisers used to measure and guide action-oriented video SR."""
