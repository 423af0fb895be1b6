"""Shims that let HEAR 2021's PyTorch modules import and run on today's stack.

Two things break 2021-era modules here, and users should not need to know:

- torchaudio has no release for the pinned torch. torchcrepe (and other pitch
  models) import it only for file I/O and resampling, so when it is *missing*
  a small stand-in is registered in `sys.modules`: `load` (soundfile),
  `functional.resample` and `transforms.Resample` (polyphase, scipy). A real
  torchaudio, when installed, is always used instead.
- librosa >= 0.10 made most arguments keyword-only, so 2021 calls such as
  `librosa.filters.mel(44100, n_fft=4096)` (hearbaseline.naive) raise
  TypeError. `librosa.filters.mel` and `librosa.resample` are wrapped to map
  extra positional arguments onto the keyword-only parameters in declared
  order, as librosa 0.9 did (with a deprecation warning). Calls that were
  valid stay untouched.

  torch_compat.install()        # idempotent; the bridge calls it before importing
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import math
import sys
import types

STUB_VERSION = "0.0.0+hear_jax.stub"
# librosa functions that 2021 HEAR modules call with positional arguments.
LIBROSA_LEGACY_POSITIONAL = ("filters.mel", "resample")


def install() -> None:
  """Installs every shim that is needed and not yet installed."""
  install_torchaudio_stub()
  install_librosa_positional_args()


def install_torchaudio_stub() -> bool:
  """Registers the torchaudio stand-in if torchaudio is missing; says whether."""
  if "torchaudio" in sys.modules or importlib.util.find_spec("torchaudio"):
    return False
  import torch  # Only the bridge calls this, and it has torch already.
  import numpy as np
  import scipy.signal

  def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int,
               **unused) -> torch.Tensor:
    """Polyphase resampling along the last axis (scipy's resample_poly)."""
    orig_freq, new_freq = int(orig_freq), int(new_freq)
    if orig_freq == new_freq:
      return waveform
    g = math.gcd(orig_freq, new_freq)
    out = scipy.signal.resample_poly(waveform.detach().cpu().numpy(),
                                     new_freq // g, orig_freq // g, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(
        waveform.device)

  class Resample(torch.nn.Module):
    """`torchaudio.transforms.Resample(orig_freq, new_freq)`."""

    def __init__(self, orig_freq: int = 16000, new_freq: int = 16000, **unused):
      super().__init__()
      self.orig_freq, self.new_freq = orig_freq, new_freq

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
      return resample(waveform, self.orig_freq, self.new_freq)

  def load(path, **unused) -> tuple[torch.Tensor, int]:
    """`torchaudio.load`: float32 [channels, samples] and the sample rate."""
    import soundfile
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(data.T)), rate

  torchaudio = types.ModuleType("torchaudio")
  torchaudio.__path__ = []  # a package, so `import torchaudio.transforms` works
  torchaudio.__version__ = STUB_VERSION
  torchaudio.load = load
  functional = types.ModuleType("torchaudio.functional")
  functional.resample = resample
  transforms = types.ModuleType("torchaudio.transforms")
  transforms.Resample = Resample
  torchaudio.functional, torchaudio.transforms = functional, transforms
  sys.modules.update({"torchaudio": torchaudio,
                      "torchaudio.functional": functional,
                      "torchaudio.transforms": transforms})
  return True


def install_librosa_positional_args() -> list[str]:
  """Wraps the librosa functions of `LIBROSA_LEGACY_POSITIONAL` that reject
  positional arguments; returns the names wrapped now."""
  try:
    librosa = importlib.import_module("librosa")
  except ImportError:
    return []
  wrapped = []
  for dotted in LIBROSA_LEGACY_POSITIONAL:
    *parents, name = dotted.split(".")
    owner = librosa
    for parent in parents:
      owner = getattr(owner, parent)
    fn = getattr(owner, name)
    if getattr(fn, "__hear_jax_positional__", False):
      continue
    legacy = accept_positional(fn)
    if legacy is not fn:
      setattr(owner, name, legacy)
      wrapped.append(f"librosa.{dotted}")
  return wrapped


def accept_positional(fn):
  """`fn` made to take its keyword-only parameters positionally, in order;
  `fn` itself when it has none."""
  params = list(inspect.signature(fn).parameters.values())
  positional = [p for p in params if p.kind in (
      p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
  keyword_only = [p.name for p in params if p.kind == p.KEYWORD_ONLY]
  if not keyword_only or any(p.kind == p.VAR_POSITIONAL for p in params):
    return fn

  @functools.wraps(fn)
  def legacy(*args, **kwargs):
    extra = args[len(positional):]
    if len(extra) > len(keyword_only):
      raise TypeError(f"{fn.__qualname__}() takes at most "
                      f"{len(positional) + len(keyword_only)} arguments")
    for name, value in zip(keyword_only, extra):
      if name in kwargs:
        raise TypeError(f"{fn.__qualname__}() got multiple values for {name!r}")
      kwargs[name] = value
    return fn(*args[:len(positional)], **kwargs)

  legacy.__hear_jax_positional__ = True
  return legacy
