"""Upstream SAM / MobileSAM as test oracles (test extras only)."""
