"""The experiment runner of dlf_jax (flax-examples / big_vision layout).

* :mod:`experiments.main` -- the absl entry point (``python -m experiments.main``);
* :mod:`experiments.train` -- ``run(config, workdir)``: teach, freeze, train
  students for every method and seed, evaluate, report; resumable;
* :mod:`experiments.reporting` -- tables, JSON/CSV writers and plots (pure
  functions, also used by ``notebooks/quickstart.ipynb``);
* ``experiments/configs/`` -- one ``get_config(arg)`` per paper experiment.
"""
