"""Vmapped sweeps: points that differ only in scalar hyperparameters and seeds, as one program.

The points' train states are stacked along a leading axis and `steps.train_step` is `jax.vmap`ped
over it inside the pmapped step, so one compiled step trains every point. Each point keeps what
it would have alone: its seed's keys and data order (`train.run_keys`, `pipeline.train_batches`),
its own hyperparameters (passed to the step as arrays, `steps.HPARAMS`), and its own workdir
with checkpoints, metrics.jsonl, TensorBoard events, images and results. A point whose loss
becomes NaN is stopped and reported while the others go on (the vmapped lanes are independent).

    python launch.py --config=experiments/toy2d.py --sweep --sweep_vmap --workdir=runs/sweep

Why it is faster: a small model leaves a device mostly idle (per-op dispatch, small matmuls,
one step at a time); stacking P points makes every matmul P times larger for one dispatch.
"""

import functools
import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vae_jax import configs as configs_lib, workdir as workdir_lib
from vae_jax.data import pipeline
from vae_jax.data.registry import make_sources
from vae_jax.distributed import pmap_devices
from vae_jax.errors import UserError
from vae_jax.models import build_model
from vae_jax.run import save_run_info
from vae_jax.steps import (AXIS, HPARAMS, eval_step, init_train_state, replicate, train_step,
                           unreplicate)
from vae_jax.sweep.runner import get_field
from vae_jax.train import (EVAL, INIT, SAMPLE, TRAIN, check_devices, eval_interval,
                           image_grids, num_train_steps, run_keys, wanted_metrics)

VMAPPABLE = frozenset(HPARAMS) | {'seed'}


def _flat(config) -> dict:
    out = {}

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f'{prefix}{k}.')
            else:
                out[prefix + k] = v
    walk(config.to_dict(), '')
    return out


def varying_hparams(configs: Sequence) -> list[str]:
    """The HPARAMS in which `configs` differ; UserError if they differ in anything else."""
    flat = [_flat(c) for c in configs]
    differing = sorted(k for k in flat[0] if any(f.get(k) != flat[0][k] for f in flat[1:]))
    bad = [k for k in differing if k not in VMAPPABLE]
    if bad:
        raise UserError(f'vmapped sweep points may differ only in {", ".join(sorted(VMAPPABLE))}; '
                        f'these differ in {", ".join(bad)}: run the sweep without --sweep_vmap')
    return [k for k in differing if k != 'seed']


def stack(trees: Sequence):
    """[tree] -> one tree of stacked leaves [P, ...], with the first tree's static fields."""
    leaves = [jax.tree.leaves(t) for t in trees]
    return jax.tree.unflatten(jax.tree.structure(trees[0]),
                              [np.stack([np.asarray(x) for x in xs]) for xs in zip(*leaves)])


def unstack(tree, p: int):
    return jax.tree.map(lambda x: x[p], tree)


def _stack_batches(batches: Sequence[dict]) -> dict:
    """Per-point batches [devices, b, ...] -> [devices, P, b, ...]."""
    return {k: np.stack([b[k] for b in batches], axis=1) for k in batches[0]}


def group_steps(model, config, devices):
    """(p_train, p_eval): the pmapped steps with every argument vmapped over the points."""
    common = dict(model=model, model_config=config.model, binarize=config.data.binarize)
    devices = pmap_devices(devices)  # with several processes: all of theirs, for global pmeans
    step = jax.vmap(functools.partial(train_step, objective=config.objective, **common))
    p_train = jax.pmap(step, axis_name=AXIS, in_axes=(0, 0, None, None), donate_argnums=(0,),
                       devices=devices)
    evaluate = jax.vmap(functools.partial(eval_step, **common))
    p_eval = jax.pmap(evaluate, axis_name=AXIS, in_axes=(0, 0, None), devices=devices)
    return p_train, p_eval


def train_group(configs: Sequence, workdirs: Sequence, devices=None) -> list[str | None]:
    """Trains the runs `configs[p]` in `workdirs[p]` together; each as `train_and_evaluate` would.

    Returns:
      One entry per point: None if it finished, else the error that stopped it.
    """
    for c in configs:
        configs_lib.validate(c)
    for w in workdirs:
        workdir_lib.check(w)
    base = configs[0]
    hp_keys = varying_hparams(configs)
    devices = list(devices or jax.local_devices())
    check_devices(base, devices)
    sources = [make_sources(c.data, c.seed) for c in configs]
    train_source = sources[0][0]
    model = build_model(base.model, train_source.example_shape, train_source.num_classes)
    total = num_train_steps(base, train_source.num_examples)
    eval_every = eval_interval(base, train_source.num_examples)
    keys = [run_keys(c.seed) for c in configs]
    init_config = base.copy_and_resolve_references()
    if 'optim.learning_rate' in hp_keys:  # the step scales the updates of lr 1 by each point's
        init_config.optim.learning_rate = 1.0
    states = [init_train_state(k[INIT], model, init_config, train_source.example_shape, total)
              for k in keys]

    paths = [workdir_lib.prepare(w) for w in workdirs]
    ckpts = [workdir_lib.Checkpoints(p, c.keep_checkpoints) for p, c in zip(paths, configs)]
    states = [ck.restore(s) if ck.latest_step() is not None else s
              for ck, s in zip(ckpts, states)]
    starts = {int(s.step) for s in states}
    if len(starts) > 1:
        for ck in ckpts:
            ck.close()
        raise UserError(f'the points\' checkpoints are at different steps {sorted(starts)}; '
                        f'resume them without --sweep_vmap')
    start = starts.pop()
    for p, c in zip(paths, configs):
        workdir_lib.save_config(p, c)
        if workdir_lib.is_writer():
            save_run_info(p, train_source.example_shape, train_source.num_classes)
    writers = [workdir_lib.MetricWriter(p, start) for p in paths]
    hparams = {k: jnp.asarray([get_field(c, k) for c in configs], jnp.float32) for k in hp_keys}
    train_keys = jnp.stack([k[TRAIN] for k in keys])
    eval_keys = jnp.stack([k[EVAL] for k in keys])
    if base.model.encoder == 'conv' and jax.default_backend() == 'cpu':
        # benchmarks/vmapped_sweep.py --step_only: 8 dSprites conv points, 2.1 point-steps/s
        # vmapped against 9.2 one by one.
        logging.warning('vmapping a conv model over %d points makes grouped convolutions, '
                        'which XLA:CPU runs about 4x slower than separate runs; on a CPU, '
                        'sweep conv models without --sweep_vmap', len(configs))
    p_train, p_eval = group_steps(model, base, devices)
    rstate = replicate(stack(states), devices)
    common = dict(global_batch=base.batch_size, local_device_count=len(devices),
                  process_index=jax.process_index(), process_count=jax.process_count())
    streams = [pipeline.train_batches(s[0], seed=c.seed, start_step=start,
                                      num_steps=total - start, **common)
               for s, c in zip(sources, configs)]
    errors: list[str | None] = [None] * len(configs)
    history, t0, s0 = [], time.perf_counter(), start
    try:
        for step in range(start + 1, total + 1):
            rstate, metrics = p_train(rstate, _stack_batches([next(s) for s in streams]),
                                      train_keys, hparams)
            history.append((step, metrics))
            do_eval = step % eval_every == 0 or step == total
            do_ckpt = step % base.checkpoint_every == 0 or step == total
            if step % base.log_every == 0 or do_eval or do_ckpt:
                _log_window(history, writers, errors, step, total, t0, s0)
                history, t0, s0 = [], time.perf_counter(), step
            if do_eval:
                _evaluate(p_eval, rstate, sources, configs, eval_keys, devices, writers, errors,
                          step, model, keys)
                t0, s0 = time.perf_counter(), step
            if do_ckpt:
                state = unreplicate(rstate)
                for p, ck in enumerate(ckpts):
                    if errors[p] is None:
                        ck.save(step, unstack(state, p))
        state = unreplicate(rstate)
        for p, (c, (train_p, eval_p)) in enumerate(zip(configs, sources)):
            if errors[p] is None and wanted_metrics(c, train_p):  # every process, as in train
                from vae_jax.evaluate import factor_report
                if not factor_report.has_results(paths[p], total):
                    factor_report.evaluate_and_write(model, unstack(state, p).params, c, train_p,
                                                     eval_p, paths[p], total, writers[p])
    finally:
        for s in streams:
            s.close()
        for w in writers:
            w.close()
        for ck in ckpts:
            ck.close()
    return errors


def _log_window(history, writers, errors, step, total, t0, s0) -> None:
    """Writes each live point's mean metrics over the window; stops points whose loss is NaN."""
    history = [(s, jax.tree.map(lambda v: np.asarray(v[0]), m)) for s, m in jax.device_get(history)]
    losses = []
    for p, writer in enumerate(writers):
        if errors[p] is not None:
            continue
        rows = [(s, {k: float(v[p]) for k, v in m.items()}) for s, m in history]
        bad = next((s for s, m in rows if not np.isfinite(m['loss'])), None)
        if bad is not None:
            errors[p] = (f'loss became {rows[-1][1]["loss"]} at step {bad}; this point stopped '
                         f'and keeps its last checkpoint')
            logging.error('sweep point %d: %s', p, errors[p])
            continue
        window = {k: float(np.mean([m[k] for _, m in rows])) for k in rows[-1][1]}
        writer.scalars(step, 'train', window)
        losses.append(window['loss'])
    rate = (step - s0) / (time.perf_counter() - t0)
    logging.info('step %d/%d | %d points, loss %.3f..%.3f | %.1f steps/s of every point',
                 step, total, len(losses), min(losses, default=np.nan),
                 max(losses, default=np.nan), rate)


def _evaluate(p_eval, rstate, sources, configs, eval_keys, devices, writers, errors, step,
              model, keys) -> None:
    base = configs[0]
    kw = dict(global_batch=base.eval_batch_size, local_device_count=len(devices),
              process_index=jax.process_index(), process_count=jax.process_count(),
              max_examples=base.eval_examples or None)
    totals = None
    for batches in zip(*[pipeline.eval_batches(s[1], **kw) for s in sources]):
        sums = p_eval(rstate.params, _stack_batches(batches), eval_keys)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(unreplicate(totals))
    state = unreplicate(rstate)
    for p, writer in enumerate(writers):
        if errors[p] is not None:
            continue
        results = {k: float(v[p] / totals['count'][p]) for k, v in totals.items() if k != 'count'}
        writer.scalars(step, 'eval', results)
        for name, grid in image_grids(model, unstack(state, p), sources[p][1], configs[p],
                                      keys[p][SAMPLE]).items():
            writer.image(step, name, grid)
    logging.info('eval at step %d: neg_elbo %s', step, ', '.join(
        f'{totals["neg_elbo"][p] / totals["count"][p]:.3f}' for p in range(len(configs))))


def run_group(points: Sequence, configs: Sequence, root: Path, devices=None) -> list:
    """`runner.run_point` for many points at once: skips finished ones, trains the rest
    together with `train_group`, and records each point's status."""
    from vae_jax.sweep import runner
    outcomes, todo = {}, []
    for point, config in zip(points, configs):
        workdir = Path(root) / point.name
        status = runner.read_status(workdir) or {}
        differences = runner._config_differences(workdir, config)
        if differences:
            outcomes[point.index] = runner.Outcome(point, 'failed', error=(
                f'{workdir} holds a run of another config ({"; ".join(differences[:3])})'))
        elif status.get('status') == 'done':
            outcomes[point.index] = runner.Outcome(point, 'done', skipped=True,
                                                   wall_s=status.get('wall_s'))
        else:
            todo.append((point, config, workdir, status))
    if todo:
        records = []
        for point, _, workdir, status in todo:
            records.append({'index': point.index, 'name': point.name,
                            'overrides': point.overrides, 'status': 'started',
                            'attempts': status.get('attempts', 0) + 1, 'started': runner._now(),
                            'finished': None, 'wall_s': None, 'error': None, 'vmapped': len(todo)})
            if workdir_lib.is_writer():
                workdir_lib.prepare(workdir)
                runner._write_json(workdir / runner.STATUS_FILE, records[-1])
        logging.info('training %d sweep points as one vmapped program', len(todo))
        start = time.perf_counter()
        try:
            errors = train_group([t[1] for t in todo], [t[2] for t in todo], devices)
        except UserError as e:  # the group as a whole could not run
            errors = [str(e)] * len(todo)
        wall = time.perf_counter() - start
        for (point, _, workdir, _), record, error in zip(todo, records, errors):
            outcome = runner.Outcome(point, 'failed' if error else 'done', wall_s=wall, error=error)
            record.update(status=outcome.status, finished=runner._now(), wall_s=round(wall, 3),
                          error=error)
            if workdir_lib.is_writer():
                runner._write_json(workdir / runner.STATUS_FILE, record)
            outcomes[point.index] = outcome
    return [outcomes[p.index] for p in points]
