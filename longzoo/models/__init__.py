"""Loading long models as stock transformers classes, their fast attention, and the chunk-and-stride baseline."""
