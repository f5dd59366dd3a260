"""Coordinates, distances, sun geometry and the region catalog."""
