"""planetloc: find where a person is from what they say they see.

A ground-level text description is matched against a gallery of geo-tagged satellite tiles;
the best tile gives the location.
"""

__version__ = "0.1.0"
