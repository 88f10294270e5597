"""Writers of the symbolized Profile: one module per format, each with its own schema types."""
