"""Sapiens track (576 dims): a 24 x 24 body-part label map of the signer crop (28 Goliath classes), row-major."""

from extractors.maps import PARTS_LAYOUT as LAYOUT
from extractors.maps import parts_to_vector as to_vector

__all__ = ["LAYOUT", "to_vector"]
