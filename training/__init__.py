"""Training and evaluation of the built-in model (not part of the installed package)."""
