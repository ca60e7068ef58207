"""The same hypergradient in PyTorch, with ``higher`` and with TorchOpt (optional ``bench`` extra).

What a user would write instead of dlf_jax: the student (MLP or LeNet, weights
copied from the flax student), the attention teacher (``full`` W, weights
copied from ``theta``), ``T`` plain-SGD steps on the parametric loss (Eqn. 2)
unrolled by the library, the expected dev accuracy, and ``torch.autograd.grad``
back to the teacher. State features (progress, running train CE/accuracy, last
dev accuracy) are computed from detached logits exactly as
:mod:`dlf_jax.teacher` does, so the result must agree with ours numerically.

Only the ``sgd`` optimizer, the attention teacher with ``full`` W and the
``ExpectedAccuracy`` measure are replicated: the benchmark's setting.
"""
from __future__ import annotations

import math

import numpy as np

try:  # optional: pip install -e ".[bench]"
  import torch
  import torch.nn.functional as F
except ImportError:  # pragma: no cover - depends on the environment
  torch = None


def available() -> dict:
  """``{'higher': bool, 'torchopt': bool}``: which peers can run here."""
  out = {"higher": False, "torchopt": False}
  if torch is None:
    return out
  for name in out:
    try:
      __import__(name)
      out[name] = True
    except ImportError:
      pass
  return out


def _t(x, dtype):
  return torch.from_numpy(np.array(x, dtype=dtype))


class _Student(torch.nn.Module if torch is not None else object):
  """The flax MLP / LeNet of ``dlf_jax.models`` with the same weights (NHWC flatten order)."""

  def __init__(self, params, dtype):
    super().__init__()
    _t_ = lambda x: _t(x, dtype)
    self.kind = "lenet" if "Conv_0" in params else "mlp"
    if self.kind == "lenet":
      self.convs = torch.nn.ParameterList()
      for name in ("Conv_0", "Conv_1"):
        k = np.asarray(params[name]["kernel"])  # [kh, kw, in, out]
        self.convs.append(torch.nn.Parameter(_t_(k.transpose(3, 2, 0, 1))))
        self.convs.append(torch.nn.Parameter(_t_(params[name]["bias"])))
      names = ["fc", "head"]
    else:
      names = sorted([n for n in params if n.startswith("dense")],
                     key=lambda n: int(n[5:])) + ["head"]
    self.dense = torch.nn.ParameterList()
    for name in names:
      self.dense.append(torch.nn.Parameter(_t_(params[name]["kernel"])))
      self.dense.append(torch.nn.Parameter(_t_(params[name]["bias"])))

  def forward(self, x):  # x: NHWC float32
    if self.kind == "lenet":
      h = x.permute(0, 3, 1, 2)
      for i in range(0, 4, 2):
        h = F.max_pool2d(F.relu(F.conv2d(h, self.convs[i], self.convs[i + 1])), 2)
      h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)
    else:
      h = x.reshape(x.shape[0], -1)
    n = len(self.dense) // 2
    for i in range(n):
      h = h @ self.dense[2 * i] + self.dense[2 * i + 1]
      if i < n - 1:
        h = F.relu(h)
    return h


class _Teacher(torch.nn.Module if torch is not None else object):
  """``AttentionTeacher`` (full W, per-class bias): ``Phi = sum_k softmax(V s)_k W_k``."""

  def __init__(self, theta, dtype):
    super().__init__()
    self.v = torch.nn.Parameter(_t(theta["scores"]["kernel"], dtype))
    self.c = torch.nn.Parameter(_t(theta["scores"]["bias"], dtype))
    self.w_bank = torch.nn.Parameter(_t(theta["w_bank"], dtype))
    self.b_bank = torch.nn.Parameter(_t(theta["b_bank"], dtype))

  def forward(self, s):
    a = torch.softmax(s @ self.v + self.c, dim=-1)
    return torch.einsum("k,kij->ij", a, self.w_bank), a @ self.b_bank


def _loss(w, b, logits, y):
  """Eqn. (2): mean of sigmoid(-log p^T W e_y + b_y)."""
  logp = F.log_softmax(logits, dim=-1)
  score = (logp * w.T[y]).sum(-1)
  return torch.sigmoid(-score + b[y]).mean()


def hypergradient_fn(library: str,
                     params,
                     theta,
                     num_steps: int,
                     total_steps: int,
                     learning_rate: float,
                     num_classes: int = 10,
                     ema_decay: float = 0.9,
                     dtype=np.float32):
  """``fn(x [T,B,...], y [T,B], dev_x, dev_y) -> (dtheta dict of numpy, value)``.

  Args:
    library: ``higher`` | ``torchopt``.
    params / theta: the flax student's params and the teacher's ``theta``.
    num_steps: ``T``; total_steps: the teacher's progress normaliser.
    dtype: ``np.float32`` or ``np.float64`` (parameters, data and statistics).

  Raises:
    ImportError: torch or the library is not installed (``pip install -e ".[bench]"``).
  """
  if torch is None or not available()[library]:
    raise ImportError(f"The PyTorch peer {library!r} needs the 'bench' extra: "
                      "pip install -e \".[bench]\"")
  student, teacher = _Student(params, dtype), _Teacher(theta, dtype)
  tdt = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32

  def stats_step(stats, logits, y):
    with torch.no_grad():
      ce = F.cross_entropy(logits, y)
      acc = (logits.argmax(-1) == y).to(tdt).mean()
    return (ema_decay * stats[0] + (1 - ema_decay) * ce,
            ema_decay * stats[1] + (1 - ema_decay) * acc, stats[2])

  def features(t, stats):
    return torch.stack([torch.tensor(t / total_steps, dtype=tdt), stats[0], stats[1], stats[2]])

  init_stats = tuple(
      torch.tensor(v, dtype=tdt)
      for v in (math.log(num_classes), 1.0 / num_classes, 1.0 / num_classes))

  def dev_value(forward, dev_x, dev_y):
    p = torch.softmax(forward(dev_x), dim=-1)
    return p.gather(1, dev_y[:, None]).mean()

  def unroll(forward, step, x, y):
    """The T inner steps: phi_t from s_t, one differentiable SGD step, running stats."""
    stats = init_stats
    for t in range(num_steps):
      w, b = teacher(features(t, stats))
      logits = forward(x[t])
      step(_loss(w, b, logits, y[t]))
      stats = stats_step(stats, logits, y[t])

  if library == "higher":
    import higher

    def fn(x, y, dev_x, dev_y):
      opt = torch.optim.SGD(student.parameters(), lr=learning_rate)
      with higher.innerloop_ctx(student, opt, copy_initial_weights=True) as (fmodel, diffopt):
        unroll(fmodel, diffopt.step, x, y)
        value = dev_value(fmodel, dev_x, dev_y)
        grads = torch.autograd.grad(value, list(teacher.parameters()))
      return grads, value
  else:
    import torchopt

    def fn(x, y, dev_x, dev_y):
      saved = torchopt.extract_state_dict(student)
      opt = torchopt.MetaSGD(student, lr=learning_rate)
      unroll(student, opt.step, x, y)
      value = dev_value(student, dev_x, dev_y)
      grads = torch.autograd.grad(value, list(teacher.parameters()))
      torchopt.recover_state_dict(student, saved)
      return grads, value

  names = (("scores", "kernel"), ("scores", "bias"), ("w_bank",), ("b_bank",))

  def run(x, y, dev_x, dev_y):
    grads, value = fn(
        torch.from_numpy(np.asarray(x)),
        torch.from_numpy(np.asarray(y)).long(), torch.from_numpy(np.asarray(dev_x)),
        torch.from_numpy(np.asarray(dev_y)).long())
    out = {"scores": {}}
    for path, g in zip(names, grads):
      g = g.detach().numpy()
      if len(path) == 2:
        out[path[0]][path[1]] = g
      else:
        out[path[0]] = g
    return out, float(value.detach())

  return run
