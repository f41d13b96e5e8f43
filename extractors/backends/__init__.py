"""Extractor backends, one module each, registered with `extractors.registry.register` (modules whose name starts
with an underscore are helpers, not backends)."""
