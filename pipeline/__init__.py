"""signx: a reproducible DVC pipeline for the SignX sign-recognition paper."""
