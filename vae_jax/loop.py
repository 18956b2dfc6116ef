"""The training loop proper: steps, logging, NaN checks, evals, images and checkpoints.

`Loop` serves one run and a vmapped group of sweep points alike (`points.Points`); everything
before it (validation, the lock, restoring) is `train.train_points`'s.
"""

import contextlib
import functools
import time

import jax
import numpy as np
from absl import logging

from vae_jax import pictures
from vae_jax.data import pipeline
from vae_jax.model_fns import ModelFns
from vae_jax.points import Points
from vae_jax.preemption import Preempted, StopRequest
from vae_jax.steps import (TrainState, pmapped_multi_step, pmapped_steps, replicate,
                           unreplicate)
from vae_jax.timings import Timings


def evaluate(p_eval, rparams, points: Points, eval_sources, key, devices) -> list[dict]:
    """Each point's mean -ELBO, reconstruction and KL (nats per example) over its eval split.

    `rparams` are the parameters replicated over `devices`, as the train step returns them;
    `key` the eval key (one per point, stacked, when vmapped).
    """
    config = points.configs[0]
    kw = dict(global_batch=config.eval_batch_size, local_device_count=len(devices),
              process_index=jax.process_index(), process_count=jax.process_count(),
              max_examples=config.eval_examples or None)
    sums = [p_eval(rparams, points.join_batches(batches), key)
            for batches in zip(*[pipeline.eval_batches(s, **kw) for s in eval_sources])]
    # One transfer at the end, summed on the host in the order (and float32 precision) the
    # batches came: eager adds of device arrays cost more than the eval itself.
    first = jax.device_get([jax.tree.map(lambda x: x.addressable_data(0), s) for s in sums])
    totals = functools.reduce(lambda a, b: jax.tree.map(np.add, a, b), first)
    totals = jax.tree.map(lambda x: x.reshape(x.shape[1:]), totals)  # drop the device axis
    return [{k: float(v / t['count']) for k, v in t.items() if k != 'count'}
            for t in points.split(totals)]


def steps_in_call(done: int, k: int, periods, total: int) -> int:
    """How many steps the call after step `done` trains: `k` when `done` is a whole number of
    k-step calls past the last boundary and k more steps do not pass the next one, else 1.

    The boundaries are step 0, every multiple of each of `periods` (log, eval and checkpoint
    intervals) and `total`, so a call never crosses a step that logs, evaluates or saves. The
    answer depends on `done` alone, not on where the run started: a run resumed at any step it
    stopped at (a checkpoint, or the end of a call on SIGTERM) makes the same calls, and so the
    same arithmetic, as one that never stopped.
    """
    if k == 1:
        return 1
    last = max(done // p * p for p in periods)
    following = min([total] + [(done // p + 1) * p for p in periods])
    return k if (done - last) % k == 0 and done + k <= following else 1


class Loop:
    """The training loop's state between steps: what it logs, evaluates and saves, per point."""

    def __init__(self, points: Points, fns: ModelFns, devices, sources, keys: dict, ckpts,
                 writers, total: int, eval_every: int, timings: Timings | None = None):
        """sources: per point, (train source, {metric prefix: eval source}) with 'eval' first
        (`data.registry.train_and_evals`); keys: {'train', 'eval', 'sample'}: one key per point
        each; timings: where the loop adds the seconds of its phases."""
        self.timings = timings or Timings()
        self.points, self.fns, self.devices = points, fns, devices
        self.sources, self.keys, self.ckpts, self.writers = sources, keys, ckpts, writers
        self.total, self.eval_every = total, eval_every
        self.config = points.configs[0]
        self.errors: list[str | None] = [None] * len(points)
        self.last_ckpt: list[int | None] = [None] * len(points)
        self.p_train, self.p_eval = pmapped_steps(fns, self.config, devices,
                                                  vmapped=points.vmapped)
        self.k = self.config.steps_per_execution
        self.p_train_k = (pmapped_multi_step(fns, self.config, devices, vmapped=points.vmapped)
                          if self.k > 1 else None)
        self.periods = (self.config.log_every, eval_every, self.config.checkpoint_every)
        if self.k > 1 and any(p % self.k for p in self.periods):
            logging.warning('steps_per_execution=%d does not divide the log, eval and checkpoint '
                            'intervals %s: the steps before each of their steps that a call of '
                            '%d cannot reach run one per call', self.k, self.periods, self.k)
        self.grids = jax.jit(functools.partial(pictures.grid_arrays, fns),
                             static_argnums=(4,))
        self.train_key = points.join(keys['train'])
        self.eval_key = points.join(keys['eval'])
        self.hparams = points.hparams()
        if (points.vmapped and getattr(fns.module.encoder, 'convolutional', False)
                and jax.default_backend() == 'cpu'):
            # benchmarks/vmapped_sweep.py --step_only: 8 dSprites conv points, 5.0 point-steps/s
            # vmapped against 11.1 one by one.
            logging.warning('vmapping a conv model over %d points makes grouped convolutions, '
                            'which XLA:CPU runs about 2x slower than separate runs; on a CPU, '
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
        streams = []
        for source, c in zip(self.sources, self.points.configs):
            streams.append(pipeline.train_batches(source[0], seed=c.seed, **common))
            stack.callback(streams[-1].close)  # closed even if a later one fails
        with StopRequest() as stop:  # only while training: later a signal acts as usual
            self.history, self.t0, self.s0 = [], time.perf_counter(), start
            step = start
            while step < self.total:
                first = step == start  # 'first_step': the first call, 1 or k steps
                with self.timings.phase('first_step' if first else 'train_steps'):
                    rstate, step = self.call(rstate, step, streams)
                    if first:
                        jax.block_until_ready(rstate)
                if self.stop_here(step, stop, rstate):
                    break
        return unreplicate(rstate)

    def call(self, rstate: TrainState, done: int, streams) -> tuple[TrainState, int]:
        """Trains the steps after `done` that one call takes (`steps_in_call`); returns the new
        state and the last step trained."""
        k = steps_in_call(done, self.k, self.periods, self.total)
        batches = [self.points.join_batches([next(s) for s in streams]) for _ in range(k)]
        if k == 1:
            rstate, metrics = self.p_train(rstate, batches[0], self.train_key, self.hparams)
        else:  # [devices, ...] batches -> [devices, k, ...]
            batches = {name: np.stack([b[name] for b in batches], axis=1) for name in batches[0]}
            rstate, metrics = self.p_train_k(rstate, batches, self.train_key, self.hparams)
        self.history.append((done + k, k, metrics))
        return rstate, done + k

    def stop_here(self, step: int, stop: StopRequest, rstate: TrainState) -> bool:
        """Logs, evaluates and saves as `step` asks; True when every point has stopped.

        Raises Preempted after saving, on SIGTERM/SIGINT.
        """
        do_eval = step % self.eval_every == 0 or step == self.total
        do_ckpt = step % self.config.checkpoint_every == 0 or step == self.total
        do_log = step % self.config.log_every == 0 or do_eval or do_ckpt
        stopping = stop.requested(at_log_step=do_log)
        if do_log or stopping:
            with self.timings.phase('train_steps'):  # what the steps dispatched still runs
                jax.block_until_ready(self.history[-1][2])
            with self.timings.phase('log'):
                self.log(step)
            if not self.live():
                return True
        if do_eval and (not stopping or step == self.total):  # the final eval is never lost
            self.evaluate(step, rstate)
        if do_ckpt or stopping:
            with self.timings.phase('checkpoints'):
                self.save(step, unreplicate(rstate))
        if stopping:
            with self.timings.phase('checkpoints'):
                for ck in self.ckpts:
                    ck.wait()
            raise Preempted(stop.signum, step, list(self.errors))
        return False

    def log(self, step: int) -> None:
        """Writes each live point's mean metrics over the window; stops points whose loss is
        not finite."""
        history = []  # (step, {name: [] or [P]}), the first device's copy
        for last, k, m in jax.device_get(self.history):
            m = jax.tree.map(lambda v: np.asarray(v[0]), m)  # [k, ...] when k > 1
            history += ([(last, m)] if k == 1 else
                        [(last - k + 1 + i, jax.tree.map(lambda v: v[i], m)) for i in range(k)])
        losses = []
        for p in self.live():
            rows = [(s, {k: float(v[p] if self.points.vmapped else v) for k, v in m.items()})
                    for s, m in history]
            # Every metric: a finite loss with NaN gradients (grad_norm) still ruins the update.
            bad = next(((s, k, v) for s, m in rows for k, v in sorted(
                m.items(), key=lambda kv: kv[0] != 'loss') if not np.isfinite(v)), None)
            if bad is not None:
                kept = (f'the checkpoint of step {self.last_ckpt[p]} is kept'
                        if self.last_ckpt[p] is not None else 'no checkpoint was written')
                self.errors[p] = (f'{bad[1]} became {bad[2]} at step {bad[0]}; training stopped '
                                  f'and {kept} (try a lower optim.learning_rate or '
                                  f'optim.grad_clip)')
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
        lines = []
        for name in self.sources[0][1]:  # 'eval', and 'eval_heldout' with data.holdout_class
            with self.timings.phase('eval'):
                results = evaluate(self.p_eval, rstate.eval_params, self.points,
                                   [s[1][name] for s in self.sources], self.eval_key,
                                   self.devices)
            for p in self.live():
                self.writers[p].scalars(step, name, results[p])
            lines.append(f'{name}: ' + '; '.join(', '.join(f'{k} {v:.3f}' for k, v in
                                                           results[p].items())
                                                 for p in self.live()))
        with self.timings.phase('images'):
            states = self.points.split(unreplicate(rstate))
            for p in self.live():
                for name, grid in pictures.training_grids(
                        self.grids, states[p].eval_params, self.sources[p][1]['eval'],
                        self.points.configs[p], self.keys['sample'][p]).items():
                    self.writers[p].image(step, name, grid)
                self.writers[p].flush()
        logging.info('at step %d: %s', step, ' | '.join(lines))
        self.t0, self.s0 = time.perf_counter(), step

    def save(self, step: int, state: TrainState) -> None:
        states = self.points.split(state)
        for p in self.live():
            self.ckpts[p].save(step, states[p])
            self.last_ckpt[p] = step
