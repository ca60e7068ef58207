"""The experiment runner of dlf_jax (flax-examples / big_vision layout).

* :mod:`experiments.main` -- the absl entry point (``python -m experiments.main``);
  routes on ``config.task``;
* :mod:`experiments.train` -- ``run(config, workdir)``: teach, freeze, train
  students for every method and seed, evaluate, report; resumable (image
  classification);
* :mod:`experiments.translate` -- the same protocol on translation, scored by BLEU;
* :mod:`experiments.ablation` -- the teaching-efficacy protocol (``python -m
  experiments.ablation``);
* what the runners run: :mod:`experiments.schema` (every config key: its check and
  its meaning), :mod:`experiments.builders` (library objects from a config),
  :mod:`experiments.splits` (image data and the validation split),
  :mod:`experiments.phases` (teach, select, students; checkpointed),
  :mod:`experiments.corrections` (the baselines built from the data: GLC, forward
  correction with the true T, logit adjustment, class-balanced) and
  :mod:`experiments.correction_phases` (their runner side: GLC's T^ per seed, tuning),
  :mod:`experiments.workdir` (``config.json``, orbax checkpoints);
* :mod:`experiments.reporting` -- tables, JSON/CSV writers and plots (pure
  functions, also used by ``notebooks/quickstart.ipynb``);
* ``experiments/configs/`` -- one ``get_config(arg)`` per paper experiment.
"""
