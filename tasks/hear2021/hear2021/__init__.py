"""`hear2021`: the HEAR 2021 tasks as TFDS, one config per task x mode x rate."""
