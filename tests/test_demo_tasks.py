"""Tests of the offline demo tasks (tasks/demo) and their sound sources."""

from __future__ import annotations

import collections
import hashlib
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

from hear_jax.data import hear_features
from hear_jax.data.task import load_task
from tasks import demo
from tasks.demo.pitch import pitch_dataset_builder as pitch_builder
from tasks.demo.sound_events import (
    sound_events_dataset_builder as events_builder)
from tasks.demo.sources import instruments
from tasks.demo.sources import mixing
from tasks.demo.sources import noise
from tasks.demo.sources import speech
from tasks.demo.spoken_commands import (
    spoken_commands_dataset_builder as commands_builder)

SR = 16000
MODULES = {
    "pitch": pitch_builder,
    "spoken_commands": commands_builder,
    "sound_events": events_builder,
}
TASKS = tuple(MODULES)


def _prepare(module, data_dir):
  builder = module.Builder(config="tiny", data_dir=str(data_dir),
                           file_format="array_record")
  builder.download_and_prepare()
  return builder


@pytest.fixture(scope="module")
def builders(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds")
  return {name: _prepare(module, root) for name, module in MODULES.items()}


@pytest.fixture(scope="module")
def tasks(builders):
  """Each task read back from its directory alone, as a fresh process would."""
  return {name: load_task(tfds.builder_from_directory(str(b.data_dir)))
          for name, b in builders.items()}


@pytest.fixture(scope="module")
def splits(tasks):
  return {name: {s: task.read_split(s) for s in task.info.splits}
          for name, task in tasks.items()}


def _config(name, config="tiny"):
  module = MODULES[name]
  return next(c for c in module.Builder.BUILDER_CONFIGS if c.name == config)


# --- metadata -------------------------------------------------------------


@pytest.mark.parametrize("name", TASKS)
def test_metadata_has_hear_fields(tasks, name):
  info = tasks[name].info
  meta = info.metadata
  for field in hear_features.REQUIRED_METADATA + ("default_mode", "mode"):
    assert field in meta, field
  assert meta["split_mode"] == "trainvaltest"
  assert meta["splits"] == ["train", "valid", "test"]
  assert meta["mode"] == "tiny" and meta["default_mode"] == "demo"
  assert info.sample_rate == SR
  expected = {
      "pitch": ("scene", "multiclass", ["pitch_acc", "chroma_acc"], 1.0),
      "spoken_commands": ("scene", "multiclass", ["top1_acc"], 1.0),
      "sound_events": ("event", "multilabel",
                       ["event_onset_200ms_fms", "segment_1s_er"], 10.0),
  }[name]
  assert (meta["embedding_type"], meta["prediction_type"], meta["evaluation"],
          meta["sample_duration"]) == expected
  assert info.name == f"demo_{name}"


def test_default_config_is_demo():
  for module in MODULES.values():
    assert module.Builder.BUILDER_CONFIGS[0].name == "demo"
    assert {c.name for c in module.Builder.BUILDER_CONFIGS} == {"demo", "tiny"}


@pytest.mark.parametrize("name", TASKS)
def test_label_vocabulary_is_sorted_and_every_label_in_every_split(
    tasks, splits, name):
  vocab = tasks[name].info.label_vocabulary
  assert list(vocab) == sorted(set(vocab))
  for split, data in splits[name].items():
    if tasks[name].info.embedding_type == "scene":
      seen = {label for labels in data.labels for label in labels}
    else:
      seen = {e["label"] for events in data.events for e in events}
    assert seen == set(vocab), split


def test_class_counts():
  assert len(pitch_builder.LABELS) == 36
  assert len(commands_builder.LABELS) == 12
  assert set(commands_builder.LABELS) >= {"_silence_", "_unknown_", "stop"}
  assert len(events_builder.LABELS) >= 8


# --- examples -------------------------------------------------------------


@pytest.mark.parametrize("name", TASKS)
def test_ids_are_unique_hear_file_names_read_in_order(splits, name):
  all_ids = []
  for split, data in splits[name].items():
    assert len(data) == _config(name).sizes()[split]
    assert list(data.ids) == sorted(data.ids)
    assert all(re.fullmatch(r"\d{6}\.wav", i) for i in data.ids)
    all_ids.extend(data.ids)
  assert len(all_ids) == len(set(all_ids))


@pytest.mark.parametrize("name", TASKS)
def test_audio_is_int16_of_the_stated_duration(tasks, splits, name):
  n = int(round(tasks[name].info.metadata["sample_duration"] * SR))
  for data in splits[name].values():
    for audio in data.audio:
      assert audio.dtype == np.int16 and audio.shape == (n,)
      peak = int(np.max(np.abs(audio.astype(np.int32))))
      assert 0 < peak < 32767  # never silent, never clipped


@pytest.mark.parametrize("name", ["pitch", "spoken_commands"])
def test_scene_examples_have_one_label_and_no_events(splits, name):
  for data in splits[name].values():
    assert all(len(labels) == 1 for labels in data.labels)
    assert all(not events for events in data.events)


def test_silence_clips_are_as_loud_as_the_noise_under_words(splits):
  # `_silence_` must not be given away by level: its clips are background
  # noise at the levels the noise under words has, well below speech.
  levels = collections.defaultdict(list)
  for data in splits["spoken_commands"].values():
    for audio, (label,) in zip(data.audio, data.labels):
      levels[label == "_silence_"].append(
          mixing.rms_dbfs(audio.astype(np.float32) / 32768))
  assert max(levels[True]) < np.median(levels[False])
  assert min(levels[True]) > -70.0


def test_events_lie_inside_the_clip(splits):
  for data in splits["sound_events"].values():
    assert not any(data.labels)
    for events in data.events:
      assert 4 <= len(events) <= 8
      starts = [e["start"] for e in events]
      assert starts == sorted(starts)
      for e in events:
        assert 0.0 <= e["start"] < e["end"] <= 10000.0


def test_event_ends_match_the_sound_energy(splits):
  """After an isolated event's end only background remains; just before it
  the event is still above what follows. A nominal (note-length) end would
  leave the decay after `end`; a late end would leave background before it.
  """
  checked = 0
  for data in splits["sound_events"].values():
    for audio, events in zip(data.audio, data.events):
      level = 20 * np.log10(
          mixing.frame_rms(audio.astype(np.float64) / 32768, SR // 100)
          + 1e-12)
      t_ms = np.arange(len(level)) * 10.0
      busy = np.zeros(len(level), bool)
      for e in events:
        busy |= (t_ms + 10 > e["start"]) & (t_ms < e["end"])
      for e in events:
        isolated = not any(
            o is not e and o["start"] < e["end"] + 300 and o["end"] > e["start"]
            for o in events)
        if not isolated or e["end"] + 300 > 10000:
          continue
        background = np.median(level[~busy & (np.abs(t_ms - e["end"]) < 1500)])
        after = level[(t_ms >= e["end"] + 20) & (t_ms + 10 <= e["end"] + 220)]
        last = level[(t_ms >= e["end"] - 30) & (t_ms + 10 <= e["end"])]
        inside = level[(t_ms >= e["start"]) & (t_ms + 10 <= e["end"])]
        assert after.mean() < background + 5.0, e
        assert last.mean() > after.mean() + 3.0, e
        assert inside.max() > background + 20.0, e
        checked += 1
  assert checked >= 10


# --- splits ---------------------------------------------------------------


def test_pitch_splits_are_disjoint_by_instrument():
  for config_name in ("demo", "tiny"):
    config = _config("pitch", config_name)
    by_split = pitch_builder.instrument_splits(config.seed)
    sets = [set(by_split[s]) for s in demo.SPLITS]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set().union(*sets) == set(instruments.MELODIC_PROGRAMS)
    for split, allowed in zip(demo.SPLITS, sets):
      plan = pitch_builder.note_plan(config, split)
      assert {note.program for note in plan} <= allowed
      counts = collections.Counter(note.pitch for note in plan)
      assert set(counts) == set(pitch_builder.PITCHES)
      assert max(counts.values()) - min(counts.values()) <= 1


def test_spoken_commands_splits_are_disjoint_by_voice():
  config = _config("spoken_commands", "demo")
  by_split = commands_builder.speaker_splits(config.seed)
  variants = [{s.variant for s in by_split[split]} for split in demo.SPLITS]
  assert not (variants[0] & variants[1] or variants[0] & variants[2]
              or variants[1] & variants[2])
  for split, allowed in zip(demo.SPLITS, variants):
    plan = commands_builder.utterance_plan(config, split)
    spoken = [u for u in plan if u.label != "_silence_"]
    assert {u.speaker.variant for u in spoken} <= allowed
    assert all(u.word in commands_builder.UNKNOWN_WORDS
               for u in spoken if u.label == "_unknown_")
    assert all(u.word == u.label for u in spoken if u.label != "_unknown_")
    counts = collections.Counter(u.label for u in plan)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_sound_event_demo_plan_covers_every_class_in_every_split():
  config = _config("sound_events", "demo")
  sizes = {}
  for split in demo.SPLITS:
    plan = events_builder.scene_plan(config, split)
    sizes[split] = len(plan)
    assert {label for scene in plan for label in scene.labels} == set(
        events_builder.LABELS)
  assert sizes == {"train": 60, "valid": 20, "test": 20}


def test_too_small_configs_are_rejected():
  with pytest.raises(ValueError, match="fewer than the 36"):
    pitch_builder.note_plan(
        pitch_builder.PitchConfig(name="x", train=10), "train")
  with pytest.raises(ValueError, match="too few for all"):
    events_builder.scene_plan(
        events_builder.SoundEventsConfig(name="x", train=1), "train")


# --- determinism ----------------------------------------------------------


def _file_digests(builder):
  return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
          for path in sorted(builder.data_path.iterdir())
          if ".array_record" in path.name or path.name == "metadata.json"}


def test_building_twice_gives_identical_files(builders, tmp_path):
  for name, module in MODULES.items():
    again = _prepare(module, tmp_path)
    first, second = _file_digests(builders[name]), _file_digests(again)
    assert len(first) == 4 and first == second, name


def test_renders_do_not_depend_on_what_was_rendered_before():
  a4 = instruments.render_note(0, 69)
  instruments.render_note(48, 40, hold_s=1.0, total_s=1.0)  # still ringing
  instruments.render_drum(49)
  assert np.array_equal(a4, instruments.render_note(0, 69))
  # espeak-ng keeps hidden state between utterances; klatt voices draw from
  # libc rand(): `speak` must hide both.
  for voice in ("en-us+m3", "en+Reed"):
    word = speech.speak("left", voice)
    speech.speak("seven sheila", "en-us+whisper", rate=120)
    assert np.array_equal(word, speech.speak("left", voice)), voice


# --- sources --------------------------------------------------------------


def _f0(audio, sample_rate, fmin=60.0, fmax=1000.0):
  """Fundamental by normalised autocorrelation: first strong peak."""
  x = audio - audio.mean()
  window = 2048
  lags = np.arange(int(sample_rate / fmax), int(sample_rate / fmin))
  frame = x[:window]
  corr = np.array([
      np.dot(frame, x[lag:lag + window])
      / np.sqrt(np.dot(frame, frame) * np.dot(x[lag:lag + window],
                                              x[lag:lag + window]))
      for lag in lags])
  lag = lags[np.argmax(corr > 0.9 * corr.max())]
  lag = lag + np.argmax(corr[lag - lags[0]:lag - lags[0] + 8])  # local peak
  i = lag - lags[0]
  a, b, c = corr[i - 1], corr[i], corr[i + 1]
  return sample_rate / (lag + 0.5 * (a - c) / (a - 2 * b + c))


@pytest.mark.parametrize("program,pitch", [(0, 69), (40, 69), (73, 69),
                                            (24, 60), (56, 55)])
def test_note_fundamental_is_in_tune(program, pitch):
  audio = instruments.render_note(program, pitch, velocity=100)
  assert audio.dtype == np.float32 and audio.shape == (SR,)
  expected = 440.0 * 2 ** ((pitch - 69) / 12)
  f0 = _f0(audio[SR // 10:], SR)
  assert abs(f0 / expected - 1) < 0.02, (program, f0, expected)


def test_drum_hits_decay():
  kick = instruments.render_drum(36, total_s=1.0)
  start, end = mixing.active_span(kick, SR, -30.0)
  assert start < SR // 50 and 0.03 * SR < end < 0.5 * SR


def test_bad_midi_arguments_are_rejected():
  with pytest.raises(ValueError, match="outside 0..127"):
    instruments.render_note(0, 128)
  with pytest.raises(ValueError, match="velocity"):
    instruments.render_note(0, 60, velocity=0)


def test_speech_is_audible_and_sized_like_a_word():
  audio = speech.speak("yes", "en-us+f3", rate=160, pitch=60)
  assert audio.dtype == np.float32
  start, end = mixing.active_span(audio, SR, -40.0)
  assert 0.15 * SR < end - start < 0.9 * SR
  assert mixing.rms_dbfs(audio[start:end]) > -35.0
  assert np.max(np.abs(audio)) <= 1.0


def test_speech_voices_sound_different():
  a = speech.speak("go", "en-us+f3")
  b = speech.speak("go", "en+m7")
  assert len(a) != len(b) or not np.allclose(a, b)


def test_rejected_voice_gives_a_clear_error():
  with pytest.raises(ValueError, match="rejected voice 'en-gb'"):
    speech.speak("yes", "en-gb")


def test_voice_variants_are_listed():
  variants = speech.voice_variants()
  assert {"f3", "m7", "whisper", "klatt"} <= set(variants)
  assert len(variants) >= 50


@pytest.mark.parametrize("colour", sorted(noise.NOISE_COLOURS))
def test_coloured_noise_has_the_requested_slope(colour):
  exponent = noise.NOISE_COLOURS[colour]
  x = noise.coloured_noise(np.random.default_rng(0), 2**16, exponent)
  assert abs(np.sqrt(np.mean(x.astype(np.float64)**2)) - 1) < 1e-3
  power = np.abs(np.fft.rfft(x))**2
  freqs = np.fft.rfftfreq(len(x))
  band = (freqs > 0.005) & (freqs < 0.4)  # above the flat low end
  slope = np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0]
  assert abs(slope + exponent) < 0.1, slope


def test_noise_is_a_pure_function_of_the_generator():
  a = noise.background_noise(np.random.default_rng(7), SR, SR)
  b = noise.background_noise(np.random.default_rng(7), SR, SR)
  assert np.array_equal(a, b)
  burst = noise.noise_burst(np.random.default_rng(1), SR // 2, SR)
  assert np.isclose(np.max(np.abs(burst)), 1.0)
  assert abs(burst[-1]) < 1e-3  # faded, no click


def test_active_span_finds_a_tone_burst():
  audio = np.zeros(SR, np.float32)
  t = np.arange(4000) / SR
  audio[3000:7000] = 0.5 * np.sin(2 * np.pi * 440 * t)
  start, end = mixing.active_span(audio, SR)
  assert abs(start - 3000) <= 160 and abs(end - 7000) <= 160
  assert mixing.active_span(np.zeros(100, np.float32), SR) == (0, 0)


def test_levels_and_placement():
  x = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
  assert mixing.rms_dbfs(mixing.set_rms_dbfs(x, -20.0)) == pytest.approx(-20.0)
  assert np.max(np.abs(mixing.set_peak(x, 0.5))) == pytest.approx(0.5)
  placed = mixing.add_at(np.zeros(10, np.float32), np.ones(4, np.float32), 8)
  assert placed.tolist() == [0] * 8 + [1, 1]
  with pytest.raises(ValueError, match="offset"):
    mixing.add_at(np.zeros(10, np.float32), np.ones(4, np.float32), -1)


def test_balanced_labels_and_key_splits():
  rng = np.random.default_rng(0)
  counts = collections.Counter(demo.balanced_labels(rng, list("abcde"), 23))
  assert set(counts) == set("abcde")
  assert max(counts.values()) - min(counts.values()) <= 1
  parts = demo.split_by_key(3, list(range(10)), [60, 20, 20])
  assert [len(parts[s]) for s in demo.SPLITS] == [6, 2, 2]
  assert sorted(sum(parts.values(), ())) == list(range(10))
