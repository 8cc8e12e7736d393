"""Torch-only implementation of the Segment Anything model family."""
