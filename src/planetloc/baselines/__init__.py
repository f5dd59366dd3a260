"""Reference methods that need no neural network, to put learned models in context."""
