"""demo spoken_commands task (speech_commands-like); see
spoken_commands_dataset_builder."""
