"""Th1nker: a composable block-graph framework for latent-step (thinking) models."""

__version__ = "0.1.0"
