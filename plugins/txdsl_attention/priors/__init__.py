"""Attention with priors (survey: locality, lower modules, other sources, prior only)."""
