"""Improved multi-head attention (survey: head behaviour, restricted spans, aggregation)."""
