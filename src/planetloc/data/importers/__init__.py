"""Importers that turn other datasets' layouts into planetloc manifests."""
