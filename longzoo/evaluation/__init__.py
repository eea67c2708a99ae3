"""Masked-LM evaluation (loss, bits per token and character) and classification metrics."""
