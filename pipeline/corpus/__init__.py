"""Sign corpora: the synthetic signer (default) and the manifest every later stage reads."""
