"""What a noise- or class-aware phi learned (dlf_jax.analysis) and its figures (known values)."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from dlf_jax import analysis, losses
from dlf_jax.data import noise
from experiments import plots


def test_learned_transition_forward_correction_is_its_t():
  t = noise.pair_flip_transition(4, 0.3)
  phi = losses.ForwardCorrectionW.create(jnp.asarray(t, jnp.float32))
  got = analysis.learned_transition(phi)
  assert got.shape == (4, 4) and got.dtype == np.float64
  np.testing.assert_allclose(got, t, atol=1e-6)


def test_learned_transition_soft_target_is_w_in_t_orientation():
  # W[:, y] = (1 - eps_y) e_y + eps_y q_y; q_y puts all mass on y - 1: the ideal soft
  # target for pair-flip labels i -> i + 1 at rate eps, i.e. W[y - 1, y] = eps = T[y - 1, y].
  c, r = 4, 0.3
  q = np.roll(np.eye(c), -1, axis=0)  # column y: e_{y - 1}
  phi = losses.SoftTargetW.create(jnp.full((c,), r, jnp.float32), jnp.asarray(q, jnp.float32))
  got = analysis.learned_transition(phi)
  np.testing.assert_allclose(got, noise.pair_flip_transition(c, r), atol=1e-6)
  np.testing.assert_allclose(got.sum(0), 1.0, atol=1e-6)  # columns on the simplex
  weighted = losses.WeightedSoftTargetW(
      phi.eps, phi.b, q=phi.q, class_weights=jnp.ones((c,), jnp.float32))
  np.testing.assert_allclose(analysis.learned_transition(weighted), got, atol=0)


def test_learned_transition_other_forms_raise():
  phi = losses.identity_loss_params(3, "full", link="identity")
  with pytest.raises(ValueError, match="learned_transition needs .*'full'"):
    analysis.learned_transition(phi)


def test_noise_posterior_known_values():
  t = np.array([[0.8, 0.2], [0.0, 1.0]])
  # Uniform priors: column 1 gets 0.2 / 1.2 from class 0 and 1.0 / 1.2 from class 1.
  np.testing.assert_allclose(analysis.noise_posterior(t), [[1.0, 0.2 / 1.2], [0.0, 1.0 / 1.2]])
  np.testing.assert_allclose(
      analysis.noise_posterior(t, priors=[3, 1]), [[1.0, 0.6 / 1.6], [0.0, 1.0 / 1.6]])
  # Pair flip: columns sum to 1, so with uniform priors the posterior is T itself.
  pf = noise.pair_flip_transition(5, 0.4)
  np.testing.assert_allclose(analysis.noise_posterior(pf), pf)
  with pytest.raises(ValueError, match="priors must be"):
    analysis.noise_posterior(t, priors=[1, 1, 1])
  with pytest.raises(ValueError, match="transition must be"):
    analysis.noise_posterior(np.ones((2, 3)))


def test_class_weights_and_logit_offsets():
  eps = jnp.zeros((3,), jnp.float32)
  phi = losses.WeightedSoftTargetW(eps, eps, class_weights=jnp.asarray([0.5, 1.0, 1.5]))
  np.testing.assert_allclose(analysis.class_weights(phi), [0.5, 1.0, 1.5])
  np.testing.assert_allclose(
      analysis.class_weights(losses.WeightedSoftTargetW(eps, eps)), np.ones(3))
  offsets = losses.LogitOffsetW.create(jnp.asarray([0.5, 0.25, 0.25]), tau=1.0)
  np.testing.assert_allclose(analysis.logit_offsets(offsets), np.log([0.5, 0.25, 0.25]), rtol=1e-6)
  soft = losses.SoftTargetW.create(eps)
  with pytest.raises(ValueError, match="class_weights needs .*'soft_target'"):
    analysis.class_weights(soft)
  with pytest.raises(ValueError, match="logit_offsets needs .*'soft_target'"):
    analysis.logit_offsets(soft)


def test_transition_and_per_class_plots(tmp_path):
  t = noise.pair_flip_transition(3, 0.4)
  fig = plots.plot_transition_comparison(t * 0.9 + 0.1 / 3, t, t, str(tmp_path / "t.png"))
  assert (tmp_path / "t.png").stat().st_size > 0
  images = [ax.images[0] for ax in fig.axes if ax.images]
  assert len(images) == 3 and len({im.get_clim() for im in images}) == 1  # one colour scale
  fig = plots.plot_per_class([1.2, 1.0, 0.8], [5, 50, 500], str(tmp_path / "c.png"),
                             "class weight c_y")
  assert (tmp_path / "c.png").stat().st_size > 0
  with pytest.raises(ValueError, match="class_counts"):
    plots.plot_per_class([1.0, 2.0], [5, 50, 500], None, "w")
  with pytest.raises(ValueError, match="shape"):
    plots.plot_transition_comparison(np.eye(2), t, t, None)


def _label_record(noise_t=None, counts=(40, 20, 10)):
  return {
      "noise":
          None if noise_t is None else {
              "transition": noise_t.tolist(),
              "realised_transition": noise_t.tolist()
          },
      "imbalance":
          None if noise_t is not None else {
              "ratio": 4.0
          },
      "class_counts": {
          "train": list(counts)
      }
  }


def test_write_plots_what_was_learned(tmp_path):
  t = noise.pair_flip_transition(3, 0.4)
  forward = losses.ForwardCorrectionW.create(jnp.asarray(t, jnp.float32))
  paths = plots.write_plots(
      str(tmp_path / "a"), runs=[], teach_history=[], phi=forward, label_noise=_label_record(t))
  assert [p.rsplit("/", 1)[1] for p in paths] == ["transition_comparison.png", "learned.json"]
  learned = json.loads((tmp_path / "a" / "learned.json").read_text())
  assert learned["form"] == "forward_correction" and "per_class" not in learned
  np.testing.assert_allclose(learned["transition"], t, atol=1e-6)
  # A long tail and a weighted teacher: its class weights against the counts.
  eps = jnp.zeros((3,), jnp.float32)
  weighted = losses.WeightedSoftTargetW(eps, eps, class_weights=jnp.asarray([0.5, 1.0, 1.5]))
  paths = plots.write_plots(
      str(tmp_path / "b"), runs=[], teach_history=[], phi=weighted, label_noise=_label_record())
  assert [p.rsplit("/", 1)[1] for p in paths] == ["per_class.png", "learned.json"]
  learned = json.loads((tmp_path / "b" / "learned.json").read_text())
  assert learned["per_class"] == {"values": [0.5, 1.0, 1.5], "label": "learned class weight c_y"}
  # Neither noise nor a long tail (the default): nothing new.
  assert plots.write_plots(
      str(tmp_path / "c"), runs=[], teach_history=[], phi=forward, label_noise=None) == []
  assert not (tmp_path / "c").exists()
