"""Checkpoints to frozen graphs. Owns the signature: the JSON contract every later
stage reads (freeze/signature.py)."""
