"""SynthCORE: a procedural, physically grounded world of regions, tiles and descriptions."""
