"""The device's scene metrics give hear_jax.metrics' numbers (to 1e-6)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from hear_jax import metrics
from hear_jax.probe import device_metrics


def _case(seed: int, n: int, c: int, *, multilabel: bool, ties: bool):
  rng = np.random.default_rng(seed)
  if multilabel:
    targets = (rng.random((n, c)) < 0.3).astype(np.float32)
  else:
    targets = np.eye(c, dtype=np.float32)[rng.integers(0, c, n)]
  logits = rng.normal(size=(n, c)) + 1.5 * targets
  if ties:
    logits = np.round(logits, 1)  # many equal scores
  e = np.exp(logits - logits.max(1, keepdims=True))
  probs = (e / e.sum(1, keepdims=True)).astype(np.float32)
  return probs, targets


@pytest.mark.parametrize("name", sorted(device_metrics.SCENE))
@pytest.mark.parametrize("seed,n,c,multilabel,ties", [
    (0, 97, 5, False, False), (1, 300, 12, False, True),
    (2, 211, 7, True, False), (3, 1000, 88, False, False),
    (4, 64, 3, True, True)])
def test_same_values_as_the_host_metrics(name, seed, n, c, multilabel, ties):
  probs, targets = _case(seed, n, c, multilabel=multilabel, ties=ties)
  if not multilabel and name in ("aucroc", "d_prime"):
    # Every class needs both target values for an AUC.
    targets[:c] = np.eye(c, dtype=np.float32)
  host = metrics.compute(name, probs, targets)
  device = float(jax.jit(device_metrics.SCENE[name])(probs, targets))
  if np.isnan(host):
    assert np.isnan(device)
  else:
    assert device == pytest.approx(host, abs=1e-6, rel=1e-6), (host, device)


def test_a_perfect_class_and_an_undefined_one():
  probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]], np.float32)
  targets = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
  auc = jax.jit(device_metrics.roc_auc_per_class)(probs, targets)
  np.testing.assert_array_equal(auc, [1.0, 1.0])
  assert np.isinf(device_metrics.d_prime(probs, targets))
  one_value = np.array([[1, 0], [1, 0], [1, 0]], np.float32)
  assert np.isnan(device_metrics.aucroc(probs, one_value))
  assert float(device_metrics.mean_average_precision(probs, one_value)) == (
      pytest.approx(metrics.compute("mAP", probs, one_value)))


def test_pairwise_sum():
  x = np.random.default_rng(0).random((3, 1001)).astype(np.float32)
  np.testing.assert_allclose(device_metrics.pairwise_sum(x),
                             x.astype(np.float64).sum(1), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(device_metrics.SCENE))
@pytest.mark.parametrize("seed,multilabel,ties", [
    (5, False, False), (6, True, False), (7, True, True)])
def test_bucket_padding_leaves_the_values_unchanged(name, seed, multilabel,
                                                    ties):
  # A validation split padded to a row bucket (rows past `real`, holding
  # another split's outputs) and a head padded to a class bucket (classes
  # past n_labels: probability 0, no target) scores its real part.
  n, c = 133, 6
  probs, targets = _case(seed, n, c, multilabel=multilabel, ties=ties)
  targets[:c] = np.eye(c, dtype=np.float32)  # every class has an AUC
  host = metrics.compute(name, probs, targets)
  rng = np.random.default_rng(seed)
  rows, classes = 256, 8
  padded_probs = np.zeros((rows, classes), np.float32)
  padded_probs[:n, :c] = probs
  padded_probs[n:, :c] = rng.random((rows - n, c))  # outputs, not zeros
  padded_targets = np.zeros((rows, classes), np.float32)
  padded_targets[:n, :c] = targets
  padded_targets[n:, :c] = rng.random((rows - n, c)) < 0.5
  real = (np.arange(rows) < n).astype(np.float32)
  device = float(jax.jit(device_metrics.SCENE[name])(
      padded_probs, padded_targets, real, np.int32(c)))
  assert device == pytest.approx(host, rel=1e-6, abs=1e-6)
  # The padding is what is left out: counted, it moves the value.
  unmasked = float(jax.jit(device_metrics.SCENE[name])(padded_probs,
                                                       padded_targets))
  assert unmasked != pytest.approx(host, rel=1e-6, abs=1e-6)
