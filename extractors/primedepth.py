"""PrimeDepth track (576 dims): a 24 x 24 relative depth map of the signer crop, row-major, in [0, 1]."""

from extractors.maps import DEPTH_LAYOUT as LAYOUT
from extractors.maps import depth_to_vector as to_vector

__all__ = ["LAYOUT", "to_vector"]
