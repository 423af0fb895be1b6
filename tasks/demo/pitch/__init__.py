"""demo pitch task (nsynth_pitch-like); see pitch_dataset_builder."""
