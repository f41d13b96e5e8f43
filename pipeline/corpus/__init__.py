"""Sign corpora: the manifest contract every later stage reads (`manifest`), the registry of sources that write it
(`sources`, selected by `corpus.source` in params), the synthetic signer source (`synthetic`), and the preview."""
