"""Training one run (`train_and_evaluate`) or a vmapped sweep group (`train_points`).

One loop (`loop.Loop`) serves both (`points.Points`). In order, `train_points`:
1. validates everything (config, devices, data, batch sizes, the workdir's earlier config)
   before the first byte is written;
2. takes the workdir's lock and resumes from the newest good checkpoint (a vmapped group: the
   newest step every point has), setting damaged ones aside;
3. trains, logging (and flushing) metrics at intervals, evaluating, checkpointing; a NaN loss
   stops its point without checkpointing it; SIGTERM/SIGINT save a checkpoint and stop.
"""

import contextlib
import math

import jax
from absl import logging

from vae_jax import configs as configs_lib, model_fns, workdir as workdir_lib
from vae_jax.checkpoints import Checkpoints, DamagedCheckpoint
from vae_jax.data import pipeline
from vae_jax.data.ground_truth import wants_metrics
from vae_jax.data.registry import train_and_evals
from vae_jax.errors import UserError
from vae_jax.keys import EVAL, INIT, SAMPLE, TRAIN, run_keys
from vae_jax.loop import Loop
from vae_jax.metric_writer import MetricWriter
from vae_jax.points import Points
from vae_jax.timings import Timings
from vae_jax.steps import TrainState, init_train_state


class TrainingDiverged(UserError):
    """The loss became NaN or Inf; the last good checkpoint is left as it was."""


def num_train_steps(config, num_examples: int) -> int:
    if config.num_steps > 0:
        return config.num_steps
    return max(1, int(math.ceil(config.num_epochs * (num_examples // config.batch_size))))


def eval_interval(config, num_examples: int) -> int:
    """Steps between evals: config.eval_every, or one epoch when it is 0."""
    return config.eval_every or max(1, num_examples // config.batch_size)


def check_devices(config, devices) -> None:
    n = len(devices) * jax.process_count()
    for field in ('batch_size', 'eval_batch_size'):
        if config[field] % n:
            raise UserError(f'{field}={config[field]} is not divisible by the {n} devices; '
                            f'use a multiple of {n}')


def check_length(path, step: int | None, total: int) -> None:
    if step is not None and step > total:
        raise UserError(f'{path} is already trained to step {step}, beyond the {total} steps '
                        f'this config asks for')


def train_and_evaluate(config, workdir: str, devices=None, *,
                       allow_config_change: bool = False) -> TrainState:
    """Trains the model `config` describes, evaluating and checkpointing into `workdir`.

    Resumes from the newest good checkpoint in `workdir/checkpoints`. A workdir that holds a
    run of another config is refused (UserError) unless `allow_config_change`, which continues
    it with the change recorded in history.jsonl. `devices` defaults to all local devices; the
    global batch is split evenly over them.

    Returns:
      The final (unreplicated) TrainState. Raises TrainingDiverged on a NaN loss and
      `preemption.Preempted` after saving a checkpoint on SIGTERM/SIGINT.
    """
    states, errors = train_points([config], [workdir], devices, vmapped=False,
                                  allow_config_change=allow_config_change)
    if errors[0]:
        raise TrainingDiverged(errors[0])
    return states[0]


def train_points(configs, workdirs, devices=None, *, vmapped: bool = True,
                 allow_config_change: bool = False) -> tuple[list[TrainState], list]:
    """Trains run `configs[p]` in `workdirs[p]` for every point p: the one training loop.

    With `vmapped`, the points (which may differ only in the step's traced hyperparameters, `steps.hparam_names`, and seeds) train as one
    vmapped program, each with its own keys, data order, checkpoints, metrics and images, as if
    alone; otherwise there must be one point. A point whose loss becomes NaN stops alone.

    Returns:
      (final states, errors): per point, its state and None, or the divergence that stopped it.
    """
    timings = Timings()
    for c in configs:
        configs_lib.validate(c)
    points = Points(configs, vmapped)
    paths = [workdir_lib.check(w) for w in workdirs]
    if len(set(paths)) < len(paths):
        raise UserError('two points share a workdir')
    base = points.configs[0]
    devices = list(devices or jax.local_devices())
    check_devices(base, devices)
    with timings.phase('data'):
        sources = [train_and_evals(c.data, c.seed) for c in points.configs]
        train_source = sources[0][0]
        pipeline.check_fits(train_source, base.batch_size)  # the stream checks it only lazily
        for source in {id(s): s for t, evals in sources for s in (t, *evals.values())}.values():
            if hasattr(source, 'load'):  # decoded (or read from the machine's cache) now, so
                source.load()            # that the log says so, not inside the first step
    with timings.phase('init'):
        fns = model_fns.build(base.model, train_source.example_shape, train_source.num_classes)
        total = num_train_steps(base, train_source.num_examples)
        keys = [run_keys(c.seed) for c in points.configs]
        templates = [init_train_state(k[INIT], fns, c, train_source.example_shape, total)
                     for k, c in zip(keys, points.configs)]
    relaunch = lambda: [workdir_lib.check_relaunch(p, c, configs_lib.base_config(),
                                                   allow_config_change)
                        for p, c in zip(paths, points.configs)]
    relaunch()  # refused before anything is written
    for p in paths:
        check_length(p, workdir_lib.newest_checkpoint(p), total)

    with contextlib.ExitStack() as stack:
        for p in paths:
            workdir_lib.prepare(p)
            stack.enter_context(workdir_lib.lock(p))
        diffs = relaunch()  # again under the lock: another launch may have written meanwhile
        ckpts = []
        for p, c in zip(paths, points.configs):
            ckpts.append(Checkpoints(p, c.keep_checkpoints))
            stack.callback(ckpts[-1].close)  # closed even if a later one fails
        with timings.phase('restore'):
            states, start = restore(ckpts, templates)
        check_length(paths[0], start, total)
        for p, c, d in zip(paths, points.configs, diffs):
            workdir_lib.record_launch(p, c, start, d, forced=allow_config_change)
            workdir_lib.save_run_info(p, train_source.example_shape, train_source.num_classes)
        writers = []
        for p in paths:
            writers.append(MetricWriter(p, start))
            stack.callback(writers[-1].close)
        loop = Loop(points, fns, devices, sources,
                    {'train': [k[TRAIN] for k in keys], 'eval': [k[EVAL] for k in keys],
                     'sample': [k[SAMPLE] for k in keys]}, ckpts, writers, total,
                    eval_interval(base, train_source.num_examples), timings)
        state = loop.run(points.join(states), start, stack)
        with timings.phase('checkpoints'):
            for ck in ckpts:
                ck.wait()
        for p, (c, (train_p, evals)) in enumerate(zip(points.configs, sources)):
            if loop.errors[p] is None and wants_metrics(c, train_p):
                # Every process computes them (deterministic, the same everywhere) and process 0
                # writes: no process idles at JAX's shutdown barrier while process 0 works.
                from vae_jax.evaluate import factor_report  # scikit-learn: only when needed
                if not factor_report.has_results(paths[p], total):
                    with timings.phase('metrics'):
                        factor_report.evaluate_and_write(
                            fns, points.split(state)[p].eval_params, c, train_p, evals['eval'],
                            paths[p], total, writers[p])
        logging.info('%s', timings.summary())
        for p in paths:
            workdir_lib.record_timings(p, start, total, timings.as_dict())
    return points.split(state), loop.errors


def restore(ckpts: list[Checkpoints], templates: list) -> tuple[list, int]:
    """Each point's state at the newest step whose checkpoint every point has and can read
    (damaged ones set aside on the way, and checkpoints of later steps too: retraining
    reproduces them), or the templates and step 0."""
    common = set.intersection(*[set(ck.steps()) for ck in ckpts])
    for step in sorted(common, reverse=True):
        try:
            states = []
            for ck, template in zip(ckpts, templates):
                states.append(ck.read_agreed(template, step))
        except DamagedCheckpoint:
            continue
        break
    else:
        states, step = templates, 0
    for ck in ckpts:
        for later in (s for s in ck.steps() if s > step):
            ck.set_aside(later, f'the other points of the group have no checkpoint of step '
                                f'{later}; all resume from step {step}')
    if step:
        logging.info('resumed from %s at step %d',
                     ', '.join(str(ck.workdir / 'checkpoints') for ck in ckpts), step)
    return states, step
