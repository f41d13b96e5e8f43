"""Networks: Pose2Gloss (Stage I)."""
