"""Retrieval and geographic metrics, evaluation protocols and reports."""
