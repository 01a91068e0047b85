"""Metrics for classifiers, computed from logits and labels."""
