"""Continued pretraining, masking and evaluation (issue: pretraining). Not built yet."""
