"""Noise sounds from a seeded numpy Generator: backgrounds and bursts.

  rng = np.random.default_rng(0)
  pink = coloured_noise(rng, 16000, exponent=1.0)   # unit RMS
  room = background_noise(rng, 16000, 16000)         # unit RMS, random colour
  burst = noise_burst(rng, 4000, 16000)              # unit peak, enveloped

Every function is a pure function of the generator state and its arguments.
"""

from __future__ import annotations

import numpy as np

# Spectral slope exponents: power spectral density ~ 1 / f**exponent.
NOISE_COLOURS = {"blue": -1.0, "white": 0.0, "pink": 1.0, "brown": 2.0}


def _unit_rms(x: np.ndarray) -> np.ndarray:
  rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
  return (x / rms).astype(np.float32) if rms > 0 else x.astype(np.float32)


def _check_length(n_samples: int) -> None:
  if n_samples <= 0:
    raise ValueError(f"noise length must be positive, got {n_samples}")


def coloured_noise(rng: np.random.Generator, n_samples: int,
                   exponent: float = 1.0, *,
                   flat_below: float = 0.001) -> np.ndarray:
  """Gaussian noise with PSD ~ 1/f**exponent (0 white, 1 pink, 2 brown),
  normalised to unit RMS.

  Below `flat_below` (a fraction of the sample rate: 0.001 is 16 Hz at
  16 kHz) the spectrum is flat, so brown noise does not wander by tens of dB
  over seconds as a true random walk would.
  """
  _check_length(n_samples)
  spectrum = np.fft.rfft(rng.standard_normal(n_samples))
  freqs = np.maximum(np.fft.rfftfreq(n_samples), flat_below)
  return _unit_rms(np.fft.irfft(spectrum * freqs ** (-exponent / 2.0),
                                n=n_samples))


def mains_hum(rng: np.random.Generator, n_samples: int,
              sample_rate: int) -> np.ndarray:
  """50 or 60 Hz hum with a few decaying harmonics, unit RMS."""
  _check_length(n_samples)
  base = rng.choice([50.0, 60.0])
  t = np.arange(n_samples) / sample_rate
  hum = np.zeros(n_samples)
  for harmonic in range(1, 6):
    phase = rng.uniform(0, 2 * np.pi)
    hum += np.sin(2 * np.pi * base * harmonic * t + phase) / harmonic**1.5
  return _unit_rms(hum)


def background_noise(rng: np.random.Generator, n_samples: int,
                     sample_rate: int) -> np.ndarray:
  """A random room-like background: coloured noise, sometimes hum, and a slow
  level drift; unit RMS."""
  _check_length(n_samples)
  colour = rng.choice(sorted(NOISE_COLOURS))
  noise = coloured_noise(rng, n_samples, NOISE_COLOURS[colour])
  if rng.random() < 0.3:
    noise = noise + rng.uniform(0.2, 0.6) * mains_hum(rng, n_samples,
                                                      sample_rate)
  # Slow drift (0.1-0.5 Hz, +-30%) so backgrounds are not perfectly stationary.
  t = np.arange(n_samples) / sample_rate
  drift = 1.0 + 0.3 * rng.uniform(0, 1) * np.sin(
      2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
  return _unit_rms(noise * drift)


def noise_burst(rng: np.random.Generator, n_samples: int,
                sample_rate: int) -> np.ndarray:
  """A burst of band-limited noise (a hiss, a rumble, a spray) with a short
  attack and an exponential decay; unit peak."""
  _check_length(n_samples)
  noise = coloured_noise(rng, n_samples, rng.uniform(-1.0, 2.0))
  # Band-limit with a random band in the frequency domain.
  spectrum = np.fft.rfft(noise)
  freqs = np.fft.rfftfreq(n_samples, 1.0 / sample_rate)
  low = rng.uniform(100.0, 2000.0)
  high = min(sample_rate / 2, low * rng.uniform(2.0, 8.0))
  spectrum[(freqs < low) | (freqs > high)] = 0
  band = np.fft.irfft(spectrum, n=n_samples)
  t = np.arange(n_samples) / sample_rate
  attack = min(0.02, n_samples / sample_rate / 4)
  envelope = np.minimum(1.0, t / attack) * np.exp(
      -t / (rng.uniform(0.15, 0.5) * n_samples / sample_rate))
  # A 5 ms fade-out so the burst never ends on a click.
  fade = min(n_samples, int(0.005 * sample_rate))
  envelope[n_samples - fade:] *= np.linspace(1.0, 0.0, fade)
  burst = band * envelope
  peak = float(np.max(np.abs(burst)))
  return (burst / peak).astype(np.float32) if peak > 0 else burst.astype(
      np.float32)
