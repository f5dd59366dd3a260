"""Encoders, physical signatures and the PLANET model."""
