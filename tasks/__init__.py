"""TFDS builders of HEAR tasks: `demo/` (generated offline) and task sets
prepared from hearpreprocess output. Every builder stores the features of
`hear_jax.data.hear_features`."""
