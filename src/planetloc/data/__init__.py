"""The sample schema, manifests, importers and the SynthCORE world."""
