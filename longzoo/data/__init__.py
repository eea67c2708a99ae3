"""Corpora, labelled documents, whole-word masking and packing into training blocks."""
