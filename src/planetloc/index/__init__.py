"""Gallery indexes: encoded tiles, FAISS search, geographic priors, and ``locate``."""
