"""Validation: the evaluation loop, metrics (pure) and plots."""
