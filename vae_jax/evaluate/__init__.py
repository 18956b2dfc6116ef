"""Evaluation of trained runs: likelihood bounds, latent analysis, downstream tasks, disentanglement, reports."""
