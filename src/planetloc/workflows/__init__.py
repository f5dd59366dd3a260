"""Jobs built from the library: the demo, evaluation runs with their reports, comparisons of
methods, and the baseline runner. The command line calls these; so can any script."""
