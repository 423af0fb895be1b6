"""demo sound_events task (dcase2016_task2-like); see
sound_events_dataset_builder."""
