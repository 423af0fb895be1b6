"""Task data: the HEAR task format as TFDS features, audio I/O, resampling."""
