"""Pose Generator (`pose-generator`, SPEC §8.2): posed images of an avatar, from a bundled
library of poses or from a text prompt."""
