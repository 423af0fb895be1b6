"""hear_jax: HEAR 2021 evaluation of audio representations in JAX."""

__version__ = "0.1.0"
