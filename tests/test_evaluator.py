"""hear_jax.Evaluator: compile once, same numbers every call, every layer."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hear_jax
from hear_jax.models import from_functions, load_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = ["demo/pitch/tiny", "demo/spoken_commands/tiny",
         "demo/sound_events/tiny"]
LAYERS = 4
FRAME = 400  # 25 ms at 16 kHz


def _frames(audio):
  """[B, T] -> log power spectra of 25 ms frames [B, F, 201] and their
  centres in ms."""
  frames = audio[:, :audio.shape[1] // FRAME * FRAME].reshape(
      audio.shape[0], -1, FRAME)
  spec = jnp.log1p(jnp.abs(jnp.fft.rfft(frames, axis=-1)) ** 2)
  t_ms = (jnp.arange(frames.shape[1]) + 0.5) * FRAME / 16.0
  return spec, jnp.broadcast_to(t_ms, frames.shape[:2])


def _layered(params, audio):
  spec, t_ms = _frames(audio)
  h, layers = spec, []
  for w in params:  # each layer a fixed random map of the previous
    h = jnp.tanh(h @ w)
    layers.append(h)
  return jnp.stack(layers), t_ms


def _one_layer(params, audio, *, layer):
  emb, t_ms = _layered(params, audio)
  return emb[layer], t_ms


def _params():
  rng = np.random.default_rng(0)
  sizes = [201] + [24] * LAYERS
  return [jnp.asarray(rng.normal(0, 1 / np.sqrt(a), (a, b)), jnp.float32)
          for a, b in zip(sizes[:-1], sizes[1:])]


@pytest.fixture(scope="module")
def evaluator():
  return hear_jax.Evaluator(TASKS, probe="fast")


def test_later_calls_compile_nothing_and_repeat_the_numbers(evaluator):
  compiles = []

  def listener(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listener)
  model = load_model("melstats")
  first = evaluator.run(model, step=0)
  after_first = len(compiles)
  # A new params object of the same shapes, as a training loop passes.
  replaced = dataclasses.replace(
      model, params=jax.tree.map(lambda a: a, model.params))
  second = evaluator.run(replaced, step=1)
  third = evaluator.run(replaced, step=2)
  assert len(compiles) == after_first, (
      f"{len(compiles) - after_first} compilations after the first call")
  scores = lambda s: {k: v for k, v in s.items() if not k.endswith("seconds")}
  assert scores(first) == scores(second) == scores(third)
  assert {"demo_pitch/pitch_acc", "demo_spoken_commands/top1_acc",
          "demo_sound_events/event_onset_200ms_fms",
          "demo_pitch/seconds"} <= set(first)
  assert evaluator.last_results["demo_pitch"].probe == "ridge"


def test_per_layer_scores_equal_each_layer_alone(evaluator):
  params = _params()
  layered = from_functions(_layered, params, sample_rate=16000, name="deep")
  assert layered.layer_names == ("0", "1", "2", "3")
  scalars = evaluator.run(layered)
  results = evaluator.last_results
  for i in range(LAYERS):
    alone = from_functions(
        lambda p, a, i=i: _one_layer(p, a, layer=i), params,
        sample_rate=16000, name=f"layer{i}")
    single = evaluator.run(alone)
    for key, value in single.items():
      if key.endswith("seconds"):
        continue
      task, metric = key.split("/")
      assert scalars[f"{task}/layer_{i}/{metric}"] == pytest.approx(
          value, abs=1e-6, nan_ok=True), key
  for r in results:
    assert r.layer == "3" and set(r.layers) == {"0", "1", "2", "3"}
    assert r.score == r.layers["3"].score
    assert r.best_layer in r.layers
  rows = results.to_rows(layers=True)
  assert len(rows) == LAYERS * len(TASKS)


def test_trained_probe_fits_every_layer_in_one_program(monkeypatch):
  # HEAR's MLP grid (2 points, few epochs) on a scene and an event task:
  # every layer's heads are members of the same fit_members programs, and
  # each layer's numbers are that layer's alone, bit for bit.
  from hear_jax.probe import trainer  # pylint: disable=g-import-not-at-top
  tasks = ["demo/pitch/tiny", "demo/sound_events/tiny"]
  evaluator = hear_jax.Evaluator(tasks, probe={
      "kind": "hear", "grid": "faster", "grid_points": 2, "max_epochs": 6})
  params = _params()
  fits = []
  fit_members = trainer.fit_members
  monkeypatch.setattr(trainer, "fit_members", lambda *a, **kw: (
      fits.append(len(a[2])), fit_members(*a, **kw))[1])
  layered = evaluator.run(from_functions(_layered, params,
                                         sample_rate=16000, name="deep"))
  # One fit per task (train/valid/test: no retraining), each holding the
  # grid's 2 points of all 4 layers.
  assert fits == [2 * LAYERS] * 2, fits
  for i in range(LAYERS):
    alone = evaluator.run(from_functions(
        lambda p, a, i=i: _one_layer(p, a, layer=i), params,
        sample_rate=16000, name=f"layer{i}"))
    for key, value in alone.items():
      if not key.endswith("seconds"):
        task, metric = key.split("/")
        np.testing.assert_array_equal(
            layered[f"{task}/layer_{i}/{metric}"], value, err_msg=key)


def test_layers_through_evaluate_equal_the_evaluator(tmp_path):
  params = _params()
  layered = from_functions(_layered, params, sample_rate=16000, name="deep")
  workdir = tmp_path / "work"
  results = hear_jax.evaluate(layered, ["demo/pitch/tiny"], probe="ridge",
                              layer=1, workdir=str(workdir))
  r = results["demo_pitch"]
  assert r.layer == "1" and r.score == r.layers["1"].score
  # The leaderboard reports the chosen layer; the report lists every layer.
  assert f"| deep | demo_pitch | pitch_acc | {r.score:.4f} |" in (
      workdir / "leaderboard.md").read_text()
  layers = json.loads((workdir / "deep" / "demo_pitch" / "layers.json")
                      .read_text())
  assert [l["layer"] for l in layers["layers"]] == ["0", "1", "2", "3"]
  assert layers["chosen"] == "1"
  assert "<h2>Layers</h2>" in (workdir / "report.html").read_text()
  evaluator = hear_jax.Evaluator(["demo/pitch/tiny"], probe="ridge")
  scalars = evaluator.run(layered)
  for name, layer in r.layers.items():
    assert scalars[f"demo_pitch/layer_{name}/pitch_acc"] == pytest.approx(
        layer.score, abs=1e-6)


def test_bad_input_names_the_field(evaluator):
  with pytest.raises(ValueError, match=r"^model\.sample_rate: 44100 Hz"):
    evaluator.run(load_model("naive"))
  with pytest.raises(ValueError, match=r"^max_clips"):
    hear_jax.Evaluator(TASKS, max_clips=1)


_MESH_SCRIPT = textwrap.dedent("""
    import dataclasses, json, jax, numpy as np
    import hear_jax
    from hear_jax.models import load_model
    devices = jax.devices()
    assert len(devices) == 8, devices
    mesh = jax.sharding.Mesh(np.array(devices).reshape(4, 2), ("data", "model"))
    model = load_model("melstats")
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    sharded = dataclasses.replace(
        model, params=jax.device_put(model.params, replicated))
    tasks = ["demo/pitch/tiny", "demo/sound_events/tiny"]
    on_mesh = hear_jax.Evaluator(tasks, mesh=mesh).run(sharded)
    alone = hear_jax.Evaluator(tasks).run(model)
    print(json.dumps({"mesh": on_mesh, "one": alone}))
""")


def test_eight_host_devices_and_a_mesh():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _MESH_SCRIPT], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  for key, value in out["one"].items():
    if not key.endswith("seconds"):
      assert out["mesh"][key] == pytest.approx(value, abs=1e-4), key


_PROCESS_SCRIPT = textwrap.dedent("""
    import dataclasses, json, sys, jax, numpy as np
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
    import hear_jax
    from hear_jax.models import load_model
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    model = load_model("melstats")
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    sharded = dataclasses.replace(
        model, params=jax.device_put(model.params, replicated))
    evaluator = hear_jax.Evaluator(["demo/pitch/tiny", "demo/sound_events/tiny"],
                                   mesh=mesh)
    calls = [evaluator.run(sharded, step=step) for step in range(2)]
    print(json.dumps({"devices": jax.device_count(), "calls": calls}))
""")


def test_two_processes_under_jax_distributed():
  # 2 processes x 2 devices, one mesh over all four: each process embeds
  # its share of every batch, and every process gets the whole result.
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{s.getsockname()[1]}"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu")
  procs = [subprocess.Popen([sys.executable, "-c", _PROCESS_SCRIPT, address,
                             str(i)], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
           for i in range(2)]
  outs = []
  for proc in procs:
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    outs.append(json.loads(stdout.strip().splitlines()[-1]))
  alone = hear_jax.Evaluator(["demo/pitch/tiny", "demo/sound_events/tiny"]
                             ).run(load_model("melstats"))
  for out in outs:
    assert out["devices"] == 4
    for call in out["calls"]:
      for key, value in alone.items():
        if not key.endswith("seconds"):
          assert call[key] == pytest.approx(value, abs=1e-4), key
  strip = lambda c: {k: v for k, v in c.items() if not k.endswith("seconds")}
  assert strip(outs[0]["calls"][1]) == strip(outs[1]["calls"][1])
