"""`train_and_evaluate(config, workdir)`: the training loop around the pmapped steps.

It validates everything before touching the workdir, resumes from the latest checkpoint,
logs metrics/images at intervals, and never checkpoints a state whose loss went non-finite.
"""

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vae_jax import configs, objectives, workdir as workdir_lib
from vae_jax.data import pipeline
from vae_jax.data.ground_truth import as_ground_truth
from vae_jax.data.registry import make_sources
from vae_jax.errors import UserError
from vae_jax.evaluate import images
from vae_jax.models import VAE, build_model
from vae_jax.run import save_run_info
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


def evaluate(p_eval, rparams, source, config, key, devices) -> dict[str, float]:
    """Mean -ELBO, reconstruction and KL (nats per example) over the eval split.

    `rparams` are the parameters replicated over `devices`, as the train step returns them.
    """
    totals = None
    for batch in pipeline.eval_batches(
            source, global_batch=config.eval_batch_size, local_device_count=len(devices),
            process_index=jax.process_index(), process_count=jax.process_count(),
            max_examples=config.eval_examples or None):
        sums = p_eval(rparams, batch, key)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(unreplicate(totals))
    count = totals.pop('count')
    return {k: float(v / count) for k, v in totals.items()}


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


def _check_finite(history: list[tuple[int, dict]], last_checkpoint: int | None) -> None:
    for step, metrics in history:
        if not np.isfinite(metrics['loss']):
            kept = (f'the checkpoint of step {last_checkpoint} is kept'
                    if last_checkpoint is not None else 'no checkpoint was written')
            raise TrainingDiverged(f'loss became {metrics["loss"]} at step {step}; training '
                                   f'stopped and {kept} (try a lower optim.learning_rate or '
                                   f'optim.grad_clip)')


def train_and_evaluate(config, workdir: str, devices=None) -> TrainState:
    """Trains the model `config` describes, evaluating and checkpointing into `workdir`.

    Resumes from the latest checkpoint in `workdir/checkpoints` if there is one. `devices`
    defaults to all local devices; the global batch is split evenly over them.

    Returns:
      The final (unreplicated) TrainState.
    """
    configs.validate(config)
    workdir_lib.check(workdir)
    devices = list(devices or jax.local_devices())
    check_devices(config, devices)
    train_source, eval_source = make_sources(config.data, config.seed)
    model = build_model(config.model, train_source.example_shape, train_source.num_classes)
    total = num_train_steps(config, train_source.num_examples)
    eval_every = eval_interval(config, train_source.num_examples)
    keys = run_keys(config.seed)
    state = init_train_state(keys[INIT], model, config, train_source.example_shape, total)

    path = workdir_lib.prepare(workdir)  # only now, with the config known to be good
    ckpt = workdir_lib.Checkpoints(path, config.keep_checkpoints)
    last_ckpt = ckpt.latest_step()
    if last_ckpt is not None:
        state = ckpt.restore(state)
        logging.info('resumed from %s at step %d', path / 'checkpoints', last_ckpt)
    start = int(state.step)
    workdir_lib.save_config(path, config)
    if workdir_lib.is_writer():
        save_run_info(path, train_source.example_shape, train_source.num_classes)
    writer = workdir_lib.MetricWriter(path, start)
    p_train, p_eval = pmapped_steps(model, config, devices)
    rstate = replicate(state, devices)
    batches = pipeline.train_batches(
        train_source, seed=config.seed, global_batch=config.batch_size, start_step=start,
        num_steps=total - start, local_device_count=len(devices),
        process_index=jax.process_index(), process_count=jax.process_count())
    history, t0, s0 = [], time.perf_counter(), start
    try:
        for step in range(start + 1, total + 1):
            rstate, metrics = p_train(rstate, next(batches), keys[TRAIN])
            history.append((step, metrics))
            do_eval = step % eval_every == 0 or step == total
            do_ckpt = step % config.checkpoint_every == 0 or step == total
            if step % config.log_every == 0 or do_eval or do_ckpt:
                history = [(s, {k: float(v[0]) for k, v in m.items()})
                           for s, m in jax.device_get(history)]
                _check_finite(history, last_ckpt)
                window = {k: float(np.mean([m[k] for _, m in history])) for k in history[-1][1]}
                writer.scalars(step, 'train', window)
                rate = (step - s0) / (time.perf_counter() - t0)
                eta = time.strftime('%H:%M:%S', time.gmtime((total - step) / rate))
                logging.info('step %d/%d | loss %.3f | %.1f steps/s, %.0f examples/s | ETA %s',
                             step, total, window['loss'], rate,
                             rate * config.batch_size, eta)
                history, t0, s0 = [], time.perf_counter(), step
            if do_eval:
                state = unreplicate(rstate)
                results = evaluate(p_eval, rstate.params, eval_source, config, keys[EVAL], devices)
                writer.scalars(step, 'eval', results)
                logging.info('eval at step %d: %s', step,
                             ', '.join(f'{k} {v:.3f}' for k, v in results.items()))
                for name, g in image_grids(model, state, eval_source, config,
                                           keys[SAMPLE]).items():
                    writer.image(step, name, g)
                t0, s0 = time.perf_counter(), step
            if do_ckpt:
                ckpt.save(step, unreplicate(rstate))
                last_ckpt = step
        if wanted_metrics(config, train_source):
            # Every process computes them (deterministic, the same everywhere) and process 0
            # writes: no process idles at JAX's shutdown barrier while process 0 works.
            from vae_jax.evaluate import factor_report  # scikit-learn: only when needed
            if not factor_report.has_results(path, total):
                factor_report.evaluate_and_write(model, unreplicate(rstate).params, config,
                                                 train_source, eval_source, path, total, writer)
    finally:
        batches.close()
        writer.close()
        ckpt.close()
    return unreplicate(rstate)
