"""Tests for hear_jax.probe: grid order, the head, and the vmapped trainer."""

from __future__ import annotations

import dataclasses
import math
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hear_jax.probe import buckets
from hear_jax.probe import grid as grid_lib
from hear_jax.probe import mlp
from hear_jax.probe import trainer
from hear_jax.probe.grid import HParams, hear_grid

# One small problem and one head shape for most tests, so the jitted
# programs compile once and are reused.
D, C, N_TRAIN, N_VALID = 8, 3, 300, 100


def _blobs(seed: int, n: int):
  rng = np.random.default_rng(seed)
  centers = np.random.default_rng(123).normal(size=(C, D)) * 2.0
  labels = rng.integers(0, C, n)
  x = centers[labels] + rng.normal(size=(n, D))
  return x.astype(np.float32), np.eye(C, dtype=np.float32)[labels]


TRAIN_X, TRAIN_Y = _blobs(0, N_TRAIN)
VALID_X, VALID_Y = _blobs(1, N_VALID)


def _accuracy(probs: np.ndarray) -> float:
  return float(np.mean(probs.argmax(1) == VALID_Y.argmax(1)))


def _hp(**kw) -> HParams:
  base = dict(lr=3e-3, hidden_layers=1, hidden_dim=16, batch_size=64,
              max_epochs=12, check_val_every_n_epoch=2, patience=100,
              initialization="xavier_normal")
  return HParams(**{**base, **kw})


def _fit(hparams, key=jax.random.key(0), **kw):
  kw = {"multilabel": False, "score_fn": _accuracy, "maximize": True, **kw}
  return trainer.fit_probes(TRAIN_X, TRAIN_Y, VALID_X, VALID_Y, hparams,
                            key=key, **kw)


# --- grid -----------------------------------------------------------------

def test_default_grid_is_heares_eight_points_in_training_order():
  # hear-reference.md §5.2, "Training order".
  expected = [(1, "xavier_normal", 1e-4), (2, "xavier_uniform", 1e-3),
              (1, "xavier_normal", 1e-3), (1, "xavier_normal", 3.2e-4),
              (2, "xavier_normal", 3.2e-4), (2, "xavier_uniform", 3.2e-4),
              (2, "xavier_normal", 3.2e-3), (2, "xavier_uniform", 3.2e-3)]
  points = hear_grid()
  assert [(p.hidden_layers, p.initialization, p.lr) for p in points] == expected
  assert {(p.hidden_dim, p.dropout, p.batch_size, p.max_epochs,
           p.check_val_every_n_epoch, p.patience) for p in points} == {
               (1024, 0.1, 1024, 500, 3, 20)}
  # A single-valued override (DCASE) keeps the order.
  dcase = hear_grid(check_val_every_n_epoch=10)
  assert [dataclasses.replace(p, check_val_every_n_epoch=3)
          for p in dcase] == points


@pytest.mark.parametrize("name", ["default", "fast", "faster"])
def test_grid_matches_sklearn_parameter_grid_and_python_shuffle(name):
  sklearn_model_selection = pytest.importorskip("sklearn.model_selection")
  confs = list(sklearn_model_selection.ParameterGrid(grid_lib.GRIDS[name]))
  random.seed(42)
  random.shuffle(confs)
  points = hear_grid(name, grid_points=1000)
  assert [p.to_json() for p in points] == confs
  assert len(points) == {"default": 16, "fast": 64, "faster": 64}[name]


def test_grid_rejects_unknown_names():
  with pytest.raises(ValueError, match="unknown grid"):
    hear_grid("slow")
  with pytest.raises(ValueError, match="not an HParams field"):
    hear_grid(weight_decay=0.1)
  with pytest.raises(ValueError, match="initialization"):
    HParams(lr=1e-3, hidden_layers=1, initialization="kaiming")


def test_task_overrides_apply_global_then_metadata_grid():
  meta = {"task_name": "dcase2016_task2"}
  assert grid_lib.task_overrides(meta) == {"check_val_every_n_epoch": [10]}
  maestro = {"task_name": "maestro", "evaluation_params": {
      "task_specific_param_grid": {"max_epochs": [50],
                                   "check_val_every_n_epoch": [1]}}}
  points = hear_grid(**grid_lib.task_overrides(maestro))
  assert {(p.max_epochs, p.check_val_every_n_epoch)
          for p in points} == {(50, 1)}


# --- the head ---------------------------------------------------------------

@pytest.mark.parametrize("normal", [False, True])
def test_xavier_init_statistics_and_bias_bounds(normal):
  shape = mlp.MlpShape(in_dim=300, n_labels=40, hidden_layers=1,
                       hidden_dim=500)
  params, bn = mlp.init_mlp(jax.random.key(3), shape, normal)
  first = np.asarray(params["hidden"][0]["weight"])
  out = np.asarray(params["output"]["weight"])
  for w, fan_in, fan_out, gain in ((first, 300, 500, 1.0),
                                   (out, 500, 40, math.sqrt(2.0))):
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    assert w.shape == (fan_out, fan_in)  # torch.nn.Linear's layout
    assert abs(w.mean()) < 0.03 * std
    assert w.std() == pytest.approx(std, rel=0.03)
    bound = math.sqrt(3.0) * std
    if normal:  # untruncated: some values beyond 2 std and the uniform bound
      assert np.abs(w).max() > 2.5 * std
    else:
      assert np.abs(w).max() <= bound
      assert np.abs(w).max() > 0.99 * bound
  for layer, fan_in in ((params["hidden"][0], 300), (params["output"], 500)):
    b = np.asarray(layer["bias"])
    assert np.abs(b).max() <= 1 / math.sqrt(fan_in)
    assert np.abs(b).max() > 0.9 / math.sqrt(fan_in)
  np.testing.assert_array_equal(params["hidden"][0]["scale"], 1.0)
  np.testing.assert_array_equal(params["hidden"][0]["offset"], 0.0)
  np.testing.assert_array_equal(bn[0]["mean"], 0.0)
  np.testing.assert_array_equal(bn[0]["var"], 1.0)


def test_output_gain_is_one_without_hidden_layers():
  shape = mlp.MlpShape(in_dim=400, n_labels=400, hidden_layers=0, hidden_dim=8)
  params, bn = mlp.init_mlp(jax.random.key(0), shape, True)
  assert params["hidden"] == () and bn == ()
  std = math.sqrt(2.0 / 800)
  weight = np.asarray(params["output"]["weight"])
  assert float(np.std(weight)) == pytest.approx(std, rel=0.02)


def test_batch_norm_gradient_is_autodiffs_of_the_same_function():
  # batch_norm_train's closed-form backward pass against autodiff of the
  # textbook BatchNorm, with and without a row mask, through the output and
  # through the batch statistics alike.
  rng = np.random.default_rng(1)
  h = jnp.asarray(rng.normal(1.0, 2.0, size=(7, 5)), jnp.float32)
  layer = {"scale": jnp.asarray(rng.uniform(0.5, 2, 5), jnp.float32),
           "offset": jnp.asarray(rng.normal(size=5), jnp.float32)}
  stats = {"mean": jnp.zeros(5), "var": jnp.ones(5)}
  probe = jnp.asarray(rng.normal(size=(7, 5)), jnp.float32)

  def reference(h, scale, offset, w):
    n = jnp.sum(w)
    mean = jnp.sum(h * w[:, None], 0) / n
    var = jnp.sum(jnp.square(h - mean) * w[:, None], 0) / n
    y = (h - mean) / jnp.sqrt(var + 1e-5) * scale + offset
    return jnp.sum(y * probe * w[:, None]) + jnp.sum(mean * var)

  def ours(h, scale, offset, w, masked):
    y, new = mlp.batch_norm_train(h, {"scale": scale, "offset": offset},
                                  stats, w if masked else None)
    # The running statistics carry the batch mean and unbiased variance.
    mean = (new["mean"] - 0.9 * stats["mean"]) / 0.1
    n = jnp.sum(w)
    var = (new["var"] - 0.9 * stats["var"]) / 0.1 * (n - 1) / n
    return jnp.sum(y * probe * w[:, None]) + jnp.sum(mean * var)

  for w, masked in ((jnp.ones(7), False),
                    (jnp.asarray([1.0] * 5 + [0.0] * 2), True)):
    want = jax.grad(reference, argnums=(0, 1, 2))(
        h, layer["scale"], layer["offset"], w)
    got = jax.grad(ours, argnums=(0, 1, 2))(
        h, layer["scale"], layer["offset"], w, masked)
    for a, b in zip(got, want):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_wide_first_layer_gradient_is_autodiffs():
  # The first Linear of a wide embedding (> 2048-d) takes its weight
  # gradient from a transposed copy (mlp._linear, which apply_mlp uses
  # there); a whole head's gradients must equal autodiff's of the plain
  # matmul.
  rng = np.random.default_rng(2)
  shape = mlp.MlpShape(in_dim=2056, n_labels=5, hidden_layers=1,
                       hidden_dim=16)
  params, bn = mlp.init_mlp(jax.random.key(0), shape, xavier_normal=False)
  x = jnp.asarray(rng.normal(size=(9, 2056)), jnp.float32)
  y = jax.nn.one_hot(jnp.arange(9) % 5, 5)

  def loss(p, first_layer_matmul):
    h = first_layer_matmul(x, p["hidden"][0]["weight"])
    h, _ = mlp.batch_norm_train(h, p["hidden"][0], bn[0])
    logits = jax.nn.relu(h) @ p["output"]["weight"].T + p["output"]["bias"]
    return mlp.head_loss(logits, y, multilabel=False)

  want = jax.grad(loss)(params, lambda h, w: h @ w.T)
  got = jax.grad(loss)(params, mlp._linear)  # pylint: disable=protected-access
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_batch_norm_matches_pytorch_semantics():
  rng = np.random.default_rng(0)
  h = rng.normal(2.0, 3.0, size=(6, 4)).astype(np.float32)
  layer = {"scale": jnp.asarray(rng.uniform(0.5, 2, 4), jnp.float32),
           "offset": jnp.asarray(rng.normal(size=4), jnp.float32)}
  stats = {"mean": jnp.asarray(rng.normal(size=4), jnp.float32),
           "var": jnp.asarray(rng.uniform(0.5, 2, 4), jnp.float32)}
  y, new = mlp.batch_norm_train(jnp.asarray(h), layer, stats)
  h64 = h.astype(np.float64)
  mean, biased = h64.mean(0), h64.var(0)
  expected = ((h64 - mean) / np.sqrt(biased + 1e-5) * np.asarray(layer["scale"])
              + np.asarray(layer["offset"]))
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      new["mean"], 0.9 * np.asarray(stats["mean"]) + 0.1 * mean, rtol=1e-6)
  # Running variance takes the unbiased batch variance, n / (n - 1).
  np.testing.assert_allclose(
      new["var"], 0.9 * np.asarray(stats["var"]) + 0.1 * h64.var(0, ddof=1),
      rtol=1e-6)
  # Eval mode uses the running statistics.
  y_eval = mlp.batch_norm_eval(jnp.asarray(h), layer, new)
  running = ((h64 - np.asarray(new["mean"]))
             / np.sqrt(np.asarray(new["var"]) + 1e-5))
  np.testing.assert_allclose(
      y_eval,
      running * np.asarray(layer["scale"]) + np.asarray(layer["offset"]),
      rtol=1e-5, atol=1e-5)
  # A padded batch with a row mask behaves like the real rows alone.
  padded = np.concatenate([h, 100 * np.ones((3, 4), np.float32)])
  mask = jnp.asarray([1.0] * 6 + [0.0] * 3)
  y_mask, new_mask = mlp.batch_norm_train(jnp.asarray(padded), layer, stats,
                                          mask)
  np.testing.assert_allclose(y_mask[:6], y, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(new_mask["var"], new["var"], rtol=1e-5)


def test_losses_follow_hear_definitions():
  logits = jnp.asarray([[2.0, -1.0, 0.5], [0.0, 0.3, -0.2]])
  onehot = jnp.asarray([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
  lg = np.asarray(logits, np.float64)
  log_softmax = lg - np.log(np.exp(lg).sum(1, keepdims=True))
  ce = -(log_softmax[0, 2] + log_softmax[1, 1]) / 2
  loss = float(mlp.head_loss(logits, onehot, multilabel=False))
  assert loss == pytest.approx(ce, rel=1e-6)
  multihot = jnp.asarray([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
  p = 1 / (1 + np.exp(-lg))
  y = np.asarray(multihot)
  bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
  loss = float(mlp.head_loss(logits, multihot, multilabel=True))
  assert loss == pytest.approx(bce, rel=1e-6)
  probs = mlp.head_probabilities(logits, multilabel=False)
  np.testing.assert_allclose(np.asarray(probs).sum(1), 1.0, rtol=1e-6)


# --- early stopping ---------------------------------------------------------

def test_early_stopping_step_patience_ties_and_non_finite():
  es = trainer.early_stopping_init(3, maximize=True)
  patience = np.array([2, 2, 2])
  everyone = np.ones(3, bool)
  seq = [[0.5, np.nan, 0.2], [0.5, 0.9, 0.4], [0.4, 0.9, np.inf]]
  improved_log = []
  for check, scores in enumerate(seq):
    es, improved = trainer.early_stopping_step(
        es, np.array(scores), everyone & ~es.stopped, check=check,
        patience=patience, maximize=True)
    improved_log.append(improved.tolist())
  # Member 0: 0.5, tie (no improvement), worse -> patience 2 reached.
  # Member 1: NaN at the first check is saved as -inf, then stops.
  # Member 2: +inf improves (and is saved) but stops as non-finite.
  assert improved_log == [[True, True, True], [False, False, True],
                          [False, False, True]]
  assert es.best.tolist() == [0.5, -np.inf, np.inf]
  assert es.best_check.tolist() == [0, 0, 2]
  assert es.stopped.tolist() == [True, True, True]


def test_early_stopping_min_mode_and_frozen_members():
  es = trainer.early_stopping_init(2, maximize=False)
  es, improved = trainer.early_stopping_step(
      es, np.array([1.0, 1.0]), np.array([True, False]), check=0,
      patience=np.array([3, 3]), maximize=False)
  es, improved = trainer.early_stopping_step(
      es, np.array([0.5, 0.1]), np.array([True, True]), check=1,
      patience=np.array([3, 3]), maximize=False)
  assert improved.tolist() == [True, True]
  assert es.best.tolist() == [0.5, 0.1] and es.best_check.tolist() == [1, 1]
  assert es.wait.tolist() == [0, 0]


class _ScriptedScore:
  """Returns a fixed score sequence and remembers the probs it was given."""

  def __init__(self, scores):
    self.scores, self.seen = list(scores), []

  def __call__(self, probs):
    self.seen.append(probs.copy())
    return self.scores[len(self.seen) - 1], f"check{len(self.seen) - 1}"


def test_fit_stops_on_patience_and_keeps_the_best_checkpoint():
  score = _ScriptedScore([0.1, 0.5, 0.5, 0.4, 0.9, 0.9])
  (result,) = _fit([_hp(patience=2)], score_fn=score)
  # Best at check 1 (epoch 4); the tie at check 2 does not replace it;
  # checks 2 and 3 exhaust patience 2, so training stops after epoch 8.
  assert result.stop_reason == "patience"
  assert result.best_score == 0.5
  assert (result.best_epoch, result.epochs_run) == (4, 8)
  assert result.best_extra == "check1"
  assert [c.epoch for c in result.history] == [2, 4, 6, 8]
  assert [c.score for c in result.history] == [0.1, 0.5, 0.5, 0.4]
  assert result.train_losses.shape == (8,)
  assert result.history[-1].train_loss == pytest.approx(result.train_losses[-1])
  # The returned parameters are the ones scored at the best check.
  np.testing.assert_array_equal(trainer.predict(result, VALID_X), score.seen[1])


def test_fit_stops_at_a_nan_score_and_at_max_epochs():
  (nan_stop,) = _fit([_hp()], score_fn=_ScriptedScore([0.3, np.nan, 0.8]))
  assert nan_stop.stop_reason == "non_finite"
  assert nan_stop.best_score == 0.3
  assert (nan_stop.best_epoch, nan_stop.epochs_run) == (2, 4)
  (full,) = _fit([_hp(max_epochs=7)], score_fn=_ScriptedScore([0.1, 0.2, 0.3]))
  # max_epochs=7 with a check every 2 epochs: checks at 2, 4, 6 only.
  assert full.stop_reason == "max_epochs"
  assert (full.best_epoch, full.epochs_run, len(full.history)) == (6, 6, 3)


# --- fitting ----------------------------------------------------------------

def test_vmapped_members_learn_a_separable_problem():
  points = [_hp(lr=1e-2), _hp(lr=3e-3, initialization="xavier_uniform"),
            _hp(lr=1e-4), _hp(lr=3e-3, hidden_layers=2)]
  results = _fit(points)
  assert [r.hparams for r in results] == points
  for r in results[:2] + results[3:]:
    assert r.best_score >= 0.95, r
    assert r.history[-1].train_loss < r.history[0].train_loss
  # The tiny learning rate lags behind after 12 epochs.
  assert results[2].history[0].train_loss > results[0].history[0].train_loss
  test = trainer.predict_split(results[0], VALID_X, VALID_Y)
  assert _accuracy(test.probs) == results[0].best_score
  manual = float(mlp.head_loss(jnp.asarray(test.logits), jnp.asarray(VALID_Y),
                               multilabel=False))
  assert test.loss == pytest.approx(manual, rel=1e-6)


def test_multilabel_fit_and_loss_monitor():
  y = np.concatenate([TRAIN_Y, TRAIN_Y[:, :1] * 0], axis=1)  # an empty class
  vy = np.concatenate([VALID_Y, VALID_Y[:, :1] * 0], axis=1)
  (result,) = trainer.fit_probes(
      TRAIN_X, y, VALID_X, vy, [_hp(lr=1e-2)], multilabel=True, score_fn=None,
      maximize=False, key=jax.random.key(0))
  # Monitoring the validation loss: the best score is the lowest loss seen.
  assert result.best_score == min(c.valid_loss for c in result.history)
  probs = trainer.predict(result, VALID_X)
  assert np.mean((probs > 0.5) == (vy > 0.5)) > 0.95
  with pytest.raises(ValueError, match="maximize=False"):
    trainer.fit_probes(TRAIN_X, y, VALID_X, vy, [_hp()], multilabel=True,
                       score_fn=None, maximize=True, key=jax.random.key(0))


@pytest.mark.parametrize("shuffle", [False, True])
def test_member_in_a_group_equals_member_fitted_alone(shuffle):
  points = [_hp(lr=3e-3), _hp(lr=1e-3, initialization="xavier_uniform"),
            _hp(lr=3e-4, dropout=0.3)]
  keys = trainer.member_keys(jax.random.key(7), 3)
  group = _fit(points, key=keys, shuffle_train=shuffle)
  alone = _fit(points[1:2], key=keys[1:2], shuffle_train=shuffle)
  a, b = group[1], alone[0]
  assert (a.best_epoch, a.best_score) == (b.best_epoch, b.best_score)
  # A Linear bias right before BatchNorm has a zero gradient up to rounding,
  # which Adam scales up to +-lr: it differs between programs of different
  # member counts but cancels in the BatchNorm (with the running mean it
  # feeds), so both are left out; the predictions show it cancels.
  strip = lambda p: {**p, "hidden": tuple(
      {k: v for k, v in layer.items() if k != "bias"} for layer in p["hidden"])}
  no_mean = lambda bn: tuple(layer["var"] for layer in bn)
  for x, y in zip(jax.tree.leaves((strip(a.params), no_mean(a.bn_state))),
                  jax.tree.leaves((strip(b.params), no_mean(b.bn_state)))):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(trainer.predict(a, VALID_X),
                             trainer.predict(b, VALID_X), atol=1e-5)
  np.testing.assert_allclose(a.train_losses, b.train_losses, rtol=1e-5)


def test_rerun_is_bitwise_identical_and_keys_matter():
  points = [_hp(lr=3e-3), _hp(lr=1e-3)]
  first, second = _fit(points), _fit(points)
  other = _fit(points, key=jax.random.key(1))
  for r1, r2 in zip(first, second):
    assert r1.history == r2.history
    for x, y in zip(jax.tree.leaves(r1.params), jax.tree.leaves(r2.params)):
      np.testing.assert_array_equal(x, y)
  assert not np.array_equal(first[0].params["output"]["weight"],
                            other[0].params["output"]["weight"])


def test_shuffling_changes_training_but_not_reproducibility():
  plain = _fit([_hp()])[0]
  shuffled = _fit([_hp()], shuffle_train=True)[0]
  again = _fit([_hp()], shuffle_train=True)[0]
  assert not np.array_equal(plain.train_losses, shuffled.train_losses)
  np.testing.assert_array_equal(shuffled.train_losses, again.train_losses)


def test_a_last_training_batch_of_one_row_is_dropped():
  hp = _hp(batch_size=50, max_epochs=4)
  n = 251  # 5 full batches + 1 row
  extra = trainer.fit_probes(TRAIN_X[:n], TRAIN_Y[:n], VALID_X, VALID_Y, [hp],
                             multilabel=False, score_fn=_accuracy,
                             maximize=True, key=jax.random.key(0))[0]
  exact = trainer.fit_probes(TRAIN_X[:n - 1], TRAIN_Y[:n - 1], VALID_X,
                             VALID_Y, [hp], multilabel=False,
                             score_fn=_accuracy, maximize=True,
                             key=jax.random.key(0))[0]
  np.testing.assert_array_equal(extra.params["output"]["weight"],
                                exact.params["output"]["weight"])
  # Without BatchNorm the single row is a valid batch and is used.
  linear = dataclasses.replace(hp, hidden_layers=0)
  kept = [trainer.fit_probes(TRAIN_X[:m], TRAIN_Y[:m], VALID_X, VALID_Y,
                             [linear], multilabel=False, score_fn=_accuracy,
                             maximize=True, key=jax.random.key(0))[0]
          for m in (n, n - 1)]
  assert not np.array_equal(kept[0].params["output"]["weight"],
                            kept[1].params["output"]["weight"])


def test_bad_inputs_raise_clear_errors():
  two_labels = TRAIN_Y.copy()
  two_labels[0] = 1.0
  with pytest.raises(ValueError, match="train_y must have exactly one label"):
    trainer.fit_probes(
        TRAIN_X, two_labels, VALID_X, VALID_Y, [_hp()], multilabel=False,
        score_fn=_accuracy, maximize=True, key=jax.random.key(0))
  bad_x = VALID_X.copy()
  bad_x[3, 2] = np.nan
  with pytest.raises(ValueError, match="valid_x contains NaN"):
    trainer.fit_probes(TRAIN_X, TRAIN_Y, bad_x, VALID_Y, [_hp()],
                       multilabel=False, score_fn=_accuracy, maximize=True,
                       key=jax.random.key(0))
  with pytest.raises(ValueError, match="one key or 2 keys"):
    _fit([_hp(), _hp()], key=trainer.member_keys(jax.random.key(0), 3))


@pytest.mark.parametrize("multilabel", [False, True])
def test_one_member_matches_pytorch_training(multilabel):
  """Same init, data and batches: PyTorch's Linear/BatchNorm1d/Adam agree."""
  torch = pytest.importorskip("torch")
  hp = _hp(lr=3e-3, dropout=0.0, hidden_layers=2, max_epochs=4,
           check_val_every_n_epoch=4)
  key = jax.random.key(5)
  # The documented key derivation: member 0 inits from fold_in(member, 0).
  member = trainer.member_keys(key, 1)[0]
  shape = mlp.MlpShape(D, C, hp.hidden_layers, hp.hidden_dim)
  init, _ = mlp.init_mlp(jax.random.fold_in(member, 0), shape, True)
  (result,) = _fit([hp], key=key, multilabel=multilabel,
                   score_fn=(lambda p: 0.0) if multilabel else _accuracy)

  layers = []
  for layer in init["hidden"]:
    linear = torch.nn.Linear(*layer["weight"].shape[::-1])
    linear.weight.data = torch.tensor(np.asarray(layer["weight"]))
    linear.bias.data = torch.tensor(np.asarray(layer["bias"]))
    layers += [linear, torch.nn.BatchNorm1d(hp.hidden_dim),
               torch.nn.Dropout(0.0), torch.nn.ReLU()]
  out = torch.nn.Linear(hp.hidden_dim, C)
  out.weight.data = torch.tensor(np.asarray(init["output"]["weight"]))
  out.bias.data = torch.tensor(np.asarray(init["output"]["bias"]))
  model = torch.nn.Sequential(*layers, out)
  opt = torch.optim.Adam(model.parameters(), lr=hp.lr)
  loss_fn = (torch.nn.BCEWithLogitsLoss() if multilabel
             else torch.nn.CrossEntropyLoss())
  x, y = torch.tensor(TRAIN_X), torch.tensor(TRAIN_Y)
  model.train()
  for _ in range(hp.max_epochs):
    for start in range(0, N_TRAIN, hp.batch_size):
      xb, yb = x[start:start + hp.batch_size], y[start:start + hp.batch_size]
      loss = loss_fn(model(xb), yb if multilabel else yb.argmax(1))
      opt.zero_grad()
      loss.backward()
      opt.step()

  # Every weight agrees to float32 rounding, except the Linear biases before
  # BatchNorm: their gradient is zero in exact arithmetic; torch gets
  # rounding noise, which Adam rescales into a random walk of ~lr per step
  # (the running means follow it), while hear_jax keeps them out of the
  # batch statistics (mlp.apply_mlp). Those are copied over before
  # comparing the eval-mode outputs.
  for i, layer in enumerate(result.params["hidden"]):
    linear, bn = model[4 * i], model[4 * i + 1]
    np.testing.assert_allclose(layer["weight"],
                               linear.weight.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(layer["scale"], bn.weight.detach().numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(layer["offset"], bn.bias.detach().numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(result.bn_state[i]["var"],
                               bn.running_var.numpy(), rtol=1e-4)
    linear.bias.data = torch.tensor(np.asarray(layer["bias"]))
    bn.running_mean.data = torch.tensor(np.asarray(result.bn_state[i]["mean"]))
  np.testing.assert_allclose(result.params["output"]["weight"],
                             out.weight.detach().numpy(), atol=1e-5)
  np.testing.assert_allclose(result.params["output"]["bias"],
                             out.bias.detach().numpy(), atol=1e-5)
  model.eval()
  with torch.no_grad():
    expected = model(torch.tensor(VALID_X)).numpy()
  logits = trainer.predict_split(result, VALID_X).logits
  np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("multilabel", [False, True])
def test_shape_buckets_change_numbers_by_rounding_only(multilabel):
  # 400 rows (bucket 512), 3 classes (bucket 8), 3 members (bucket 4); the
  # last batch of 300 rows in 64s has 44 rows, a 128-row step when
  # bucketed (84 rows masked), a 44-row one when not. Shuffled, dropout on,
  # one, two and no hidden layers.
  points = [_hp(), _hp(hidden_layers=2, dropout=0.3, lr=1e-3),
            _hp(hidden_layers=0, lr=1e-2)]
  fits = [_fit(points, shuffle_train=True, multilabel=multilabel,
               shape_buckets=on) for on in (True, False)]
  for a, b in zip(*fits):
    assert a.params["output"]["weight"].shape[0] == C  # no padding class
    assert [h.epoch for h in a.history] == [h.epoch for h in b.history]
    assert a.best_epoch == b.best_epoch
    np.testing.assert_allclose(a.train_losses, b.train_losses, rtol=2e-5)
    np.testing.assert_allclose(trainer.predict(a, VALID_X),
                               trainer.predict(b, VALID_X), atol=1e-4)


def test_buckets_hold_the_count_with_at_most_a_quarter_more():
  for n in list(range(1, 3000)) + [4099, 65537, 10**6]:
    size = buckets.rows(n)
    assert n <= size <= max(256, 1.25 * n)
    assert buckets.rows(size) == size  # a padded task is its own bucket
  assert buckets.rows(10**6, row_bytes=4 * 4096) == 10**6  # too big to pad
  assert [buckets.classes(c) for c in (1, 10, 61, 64, 88, 527)] == [
      8, 16, 64, 64, 128, 1024]
  assert [buckets.members(m) for m in (1, 3, 8, 9)] == [1, 4, 8, 16]
