"""The training loop: one run (`train_and_evaluate`) or a vmapped sweep group (`train_points`).

One loop serves both (`points.Points`). In order, it:
1. validates everything (config, devices, data, batch sizes, the workdir's earlier config)
   before the first byte is written;
2. takes the workdir's lock and resumes from the newest good checkpoint (a vmapped group: the
   newest step every point has), setting damaged ones aside;
3. trains, logging (and flushing) metrics at intervals, evaluating, checkpointing; a NaN loss
   stops its point without checkpointing it; SIGTERM/SIGINT save a checkpoint and stop.
"""

import contextlib
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vae_jax import configs as configs_lib, objectives, workdir as workdir_lib
from vae_jax.checkpoints import Checkpoints, DamagedCheckpoint
from vae_jax.data import pipeline
from vae_jax.data.ground_truth import as_ground_truth
from vae_jax.data.registry import make_sources
from vae_jax.errors import UserError
from vae_jax.evaluate import images
from vae_jax.models import VAE, build_model
from vae_jax.metric_writer import MetricWriter
from vae_jax.points import Points
from vae_jax.preemption import Preempted, StopRequest
from vae_jax.steps import (TrainState, init_train_state, pmapped_steps, replicate,
                           unreplicate)

# Split of the seed key; fixed so that a run's randomness is a function of config.seed alone.
INIT, TRAIN, EVAL, SAMPLE = range(4)


class TrainingDiverged(UserError):
    """The loss became NaN or Inf; the last good checkpoint is left as it was."""


def run_keys(seed: int) -> dict[int, jax.Array]:
    base = jax.random.key(seed)
    return {i: jax.random.fold_in(base, i) for i in (INIT, TRAIN, EVAL, SAMPLE)}


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


def evaluate(p_eval, rparams, points: Points, eval_sources, key, devices) -> list[dict]:
    """Each point's mean -ELBO, reconstruction and KL (nats per example) over its eval split.

    `rparams` are the parameters replicated over `devices`, as the train step returns them;
    `key` the eval key (one per point, stacked, when vmapped).
    """
    config = points.configs[0]
    kw = dict(global_batch=config.eval_batch_size, local_device_count=len(devices),
              process_index=jax.process_index(), process_count=jax.process_count(),
              max_examples=config.eval_examples or None)
    totals = None
    for batches in zip(*[pipeline.eval_batches(s, **kw) for s in eval_sources]):
        sums = p_eval(rparams, points.join_batches(batches), key)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(unreplicate(totals))
    return [{k: float(v / t['count']) for k, v in t.items() if k != 'count'}
            for t in points.split(totals)]


def image_grids(model: VAE, state: TrainState, source, config, key) -> dict[str, np.ndarray]:
    """Inputs above reconstructions (posterior means), and decoded prior samples."""
    if len(source.example_shape) != 3:
        return {}
    lik = config.model.likelihood
    n = config.num_image_examples
    # Spread over the split: dSprites' eval set is sorted by factor, so its first rows would all
    # be small squares.
    batch = source.get_batch(np.linspace(0, source.num_examples - 1, n).astype(np.int64))
    x, y = jnp.asarray(batch['image']), jnp.asarray(batch['label'])
    variables = {'params': state.params}
    mean, _ = model.apply(variables, x, y, method=model.encode)
    recon = objectives.likelihood_mean(model.apply(variables, mean, y, method=model.decode), lik)
    rows = source.num_classes if config.model.conditional else 8
    labels = jnp.repeat(jnp.arange(rows), 8) if config.model.conditional else jnp.zeros(64, int)
    z = jax.random.normal(key, (len(labels), config.model.latents))
    samples = objectives.likelihood_mean(model.apply(variables, z, labels, method=model.decode), lik)
    return {'reconstructions': images.side_by_side(np.asarray(x), np.asarray(recon)),
            'samples': images.grid(np.asarray(samples), rows=rows)}


def wanted_metrics(config, train_source) -> bool:
    """Disentanglement metrics are configured and the data has ground-truth factors."""
    return bool(config.disentanglement.metrics) and as_ground_truth(train_source) is not None


def check_batch(config, num_examples: int) -> None:
    if config.batch_size > num_examples:
        raise UserError(f'batch_size={config.batch_size} is larger than the {num_examples} '
                        f'training examples of {config.data.name} ({config.data.train_split})')


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

    With `vmapped`, the points (which may differ only in `steps.HPARAMS` and seeds) train as one
    vmapped program, each with its own keys, data order, checkpoints, metrics and images, as if
    alone; otherwise there must be one point. A point whose loss becomes NaN stops alone.

    Returns:
      (final states, errors): per point, its state and None, or the divergence that stopped it.
    """
    points = Points(configs, vmapped)
    for c in points.configs:
        configs_lib.validate(c)
    paths = [workdir_lib.check(w) for w in workdirs]
    if len(set(paths)) < len(paths):
        raise UserError('two points share a workdir')
    base = points.configs[0]
    devices = list(devices or jax.local_devices())
    check_devices(base, devices)
    sources = [make_sources(c.data, c.seed) for c in points.configs]
    train_source = sources[0][0]
    check_batch(base, train_source.num_examples)
    model = build_model(base.model, train_source.example_shape, train_source.num_classes)
    total = num_train_steps(base, train_source.num_examples)
    keys = [run_keys(c.seed) for c in points.configs]
    templates = [init_train_state(k[INIT], model, c, train_source.example_shape, total)
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
        ckpts = [Checkpoints(p, c.keep_checkpoints) for p, c in zip(paths, points.configs)]
        for ck in ckpts:
            stack.callback(ck.close)
        states, start = restore(ckpts, templates)
        check_length(paths[0], start, total)
        for p, c, d in zip(paths, points.configs, diffs):
            workdir_lib.record_launch(p, c, start, d, forced=allow_config_change)
            workdir_lib.save_run_info(p, train_source.example_shape, train_source.num_classes)
        writers = [MetricWriter(p, start) for p in paths]
        for w in writers:
            stack.callback(w.close)
        loop = Loop(points, model, devices, sources, keys, ckpts, writers, total)
        state = loop.run(points.join(states), start, stack)
        for p, (c, (train_p, eval_p)) in enumerate(zip(points.configs, sources)):
            if loop.errors[p] is None and wanted_metrics(c, train_p):
                # Every process computes them (deterministic, the same everywhere) and process 0
                # writes: no process idles at JAX's shutdown barrier while process 0 works.
                from vae_jax.evaluate import factor_report  # scikit-learn: only when needed
                if not factor_report.has_results(paths[p], total):
                    factor_report.evaluate_and_write(model, points.split(state)[p].params, c,
                                                     train_p, eval_p, paths[p], total,
                                                     writers[p])
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
                try:
                    states.append(ck.read(template, step))
                except DamagedCheckpoint as e:
                    ck.set_aside(step, str(e))
                    raise
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


class Loop:
    """The training loop's state between steps: what it logs, evaluates and saves, per point."""

    def __init__(self, points: Points, model: VAE, devices, sources, keys, ckpts, writers,
                 total: int):
        self.points, self.model, self.devices = points, model, devices
        self.sources, self.keys, self.ckpts, self.writers = sources, keys, ckpts, writers
        self.total = total
        self.config = points.configs[0]
        self.eval_every = eval_interval(self.config, sources[0][0].num_examples)
        self.errors: list[str | None] = [None] * len(points)
        self.last_ckpt: list[int | None] = [None] * len(points)
        self.p_train, self.p_eval = pmapped_steps(model, self.config, devices,
                                                  vmapped=points.vmapped)
        self.train_key = points.join([k[TRAIN] for k in keys])
        self.eval_key = points.join([k[EVAL] for k in keys])
        self.hparams = points.hparams()
        if points.vmapped and self.config.model.encoder == 'conv' and jax.default_backend() == 'cpu':
            # benchmarks/vmapped_sweep.py --step_only: 8 dSprites conv points, 2.1 point-steps/s
            # vmapped against 9.2 one by one.
            logging.warning('vmapping a conv model over %d points makes grouped convolutions, '
                            'which XLA:CPU runs about 4x slower than separate runs; on a CPU, '
                            'sweep conv models without --sweep_vmap', len(points))

    def live(self) -> list[int]:
        return [p for p in range(len(self.points)) if self.errors[p] is None]

    def run(self, state: TrainState, start: int, stack: contextlib.ExitStack) -> TrainState:
        """Trains from step `start` to the end; returns the final (unreplicated) state."""
        self.last_ckpt = [start or None] * len(self.points)
        rstate = replicate(state, self.devices)
        common = dict(global_batch=self.config.batch_size, start_step=start,
                      num_steps=self.total - start, local_device_count=len(self.devices),
                      process_index=jax.process_index(), process_count=jax.process_count())
        streams = [pipeline.train_batches(s[0], seed=c.seed, **common)
                   for s, c in zip(self.sources, self.points.configs)]
        for s in streams:
            stack.callback(s.close)
        stop = stack.enter_context(StopRequest())
        self.history, self.t0, self.s0 = [], time.perf_counter(), start
        for step in range(start + 1, self.total + 1):
            batch = self.points.join_batches([next(s) for s in streams])
            rstate, metrics = self.p_train(rstate, batch, self.train_key, self.hparams)
            self.history.append((step, metrics))
            do_eval = step % self.eval_every == 0 or step == self.total
            do_ckpt = step % self.config.checkpoint_every == 0 or step == self.total
            do_log = step % self.config.log_every == 0 or do_eval or do_ckpt
            stopping = stop.requested(at_log_step=do_log)
            if do_log or stopping:
                self.log(step)
                if not self.live():
                    break
            if do_eval and not stopping:
                self.evaluate(step, rstate)
            if do_ckpt or stopping:
                self.save(step, unreplicate(rstate))
            if stopping:
                for ck in self.ckpts:
                    ck.wait()
                raise Preempted(stop.signum, step)
        return unreplicate(rstate)

    def log(self, step: int) -> None:
        """Writes each live point's mean metrics over the window; stops points whose loss is
        not finite."""
        history = [(s, jax.tree.map(lambda v: np.asarray(v[0]), m))
                   for s, m in jax.device_get(self.history)]
        losses = []
        for p in self.live():
            rows = [(s, {k: float(v[p] if self.points.vmapped else v) for k, v in m.items()})
                    for s, m in history]
            bad = next(((s, m['loss']) for s, m in rows if not np.isfinite(m['loss'])), None)
            if bad is not None:
                kept = (f'the checkpoint of step {self.last_ckpt[p]} is kept'
                        if self.last_ckpt[p] is not None else 'no checkpoint was written')
                self.errors[p] = (f'loss became {bad[1]} at step {bad[0]}; training stopped and '
                                  f'{kept} (try a lower optim.learning_rate or optim.grad_clip)')
                logging.error('%s: %s', self.ckpts[p].workdir, self.errors[p])
                continue
            window = {k: float(np.mean([m[k] for _, m in rows])) for k in rows[-1][1]}
            self.writers[p].scalars(step, 'train', window)
            self.writers[p].flush()
            losses.append(window['loss'])
        rate = (step - self.s0) / (time.perf_counter() - self.t0)
        eta = time.strftime('%H:%M:%S', time.gmtime((self.total - step) / rate))
        loss = (f'loss {losses[0]:.3f}' if len(losses) == 1 else
                f'{len(losses)} points, loss {min(losses, default=np.nan):.3f}..'
                f'{max(losses, default=np.nan):.3f}')
        logging.info('step %d/%d | %s | %.1f steps/s, %.0f examples/s | ETA %s', step,
                     self.total, loss, rate, rate * self.config.batch_size * len(losses), eta)
        self.history, self.t0, self.s0 = [], time.perf_counter(), step

    def evaluate(self, step: int, rstate: TrainState) -> None:
        results = evaluate(self.p_eval, rstate.params, self.points,
                           [s[1] for s in self.sources], self.eval_key, self.devices)
        states = self.points.split(unreplicate(rstate))
        for p in self.live():
            self.writers[p].scalars(step, 'eval', results[p])
            for name, grid in image_grids(self.model, states[p], self.sources[p][1],
                                          self.points.configs[p],
                                          self.keys[p][SAMPLE]).items():
                self.writers[p].image(step, name, grid)
            self.writers[p].flush()
        logging.info('eval at step %d: %s', step, '; '.join(
            ', '.join(f'{k} {v:.3f}' for k, v in results[p].items()) for p in self.live()))
        self.t0, self.s0 = time.perf_counter(), step

    def save(self, step: int, state: TrainState) -> None:
        states = self.points.split(state)
        for p in self.live():
            self.ckpts[p].save(step, states[p])
            self.last_ckpt[p] = step
