"""The experiment runner of dlf_jax (flax-examples / big_vision layout).

* :mod:`experiments.main` -- the absl entry point (``python -m experiments.main``);
  routes to ``TASKS[config.task].run(config, workdir)``;
* :mod:`experiments.tasks` -- one module per task, each with its config table, data,
  builders and ``run``: :mod:`~experiments.tasks.classification` (teach, freeze,
  train students for every method and seed, evaluate, report; resumable) and
  :mod:`~experiments.tasks.translation` (the same protocol, scored by BLEU);
* :mod:`experiments.ablation` -- the teaching-efficacy protocol (``python -m
  experiments.ablation``);
* what the runners run: :mod:`experiments.schema` (every config key: its check and
  its meaning), :mod:`experiments.builders` (library objects from a config),
  :mod:`experiments.splits` (image data and the validation split),
  :mod:`experiments.phases` (teach, select, students; checkpointed),
  :mod:`experiments.corrections` (the baselines built from the data: GLC, forward
  correction with the true T, logit adjustment, class-balanced) and
  :mod:`experiments.correction_phases` (their runner side: GLC's T^ per seed, tuning),
  :mod:`experiments.workdir` (``config.json``, orbax checkpoints),
  :mod:`experiments.selection` (every choice on the validation split: one ``select``);
* the report: :mod:`experiments.summaries` (numbers over seeds, tables, metric rows),
  :mod:`experiments.plots` (figures), :mod:`experiments.io` (atomic JSON/CSV/text
  writes); what is read off a teacher is the library's :mod:`dlf_jax.analysis`;
* ``experiments/configs/`` -- one ``get_config(arg)`` per paper experiment.
"""
