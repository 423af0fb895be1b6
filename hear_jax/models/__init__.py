"""Embedding models behind the pure-function interface (see `interface`)."""
