"""Models (Load + train): the seed models by name and the timed training loop."""
