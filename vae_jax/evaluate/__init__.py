"""Evaluation: likelihood bounds, latent analysis, downstream tasks, pictures, reports."""
