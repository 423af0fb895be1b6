"""`hearpreprocess_task`: any hearpreprocess task as TFDS, one config each."""
