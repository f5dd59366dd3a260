"""CORE-style dataset builder: sample points, fetch satellite and street-view imagery, have an
LVLM describe the street scene, and write a manifest in the sample schema.

Stages (each resumable, each runnable alone): ``sample`` -> ``streetview`` -> ``satellite``
-> ``describe`` -> ``write``. Work lives under ``<out>/work``; the finished dataset under
``<out>/dataset``.
"""
