"""The train step with its gradient-norm metric computed by `optim.global_norm` (vae_jax's form),
by `optax.global_norm`, and with no norm at all (what the norm costs).

    python benchmarks/grad_norm.py                 # mlp, hvae: 15 rounds (~2 min)
    python benchmarks/grad_norm.py --models conv   # the conv family's XLA flags

For each model: the experiment's real pmapped train step on one device (`train_speed.JaxRunner`,
batches on device, in calls of the config's `steps_per_execution` steps, compiled first),
built three times: the step's `grad_norm` metric from vae_jax's `global_norm`, from optax's,
or a constant 0 (the step without the norm: the floor either form can reach). First the
work of each compiled program, read off its text (`hlo_work.program_work`: a loop of k steps
counted once, so per step plus the call's own work): how many kernels it runs and how many
f32 elements they write (no noise: the optax form writes every gradient's squares out).
Then blocks of
`--steps` steps alternate between the three, in an order that rotates every round, each after
waiting for the machine to go quiet; the table gives ms per step (median over rounds, min-max)
and optax's over vae_jax's. Then the two forms' norms of the same gradients: they differ only in
the order of the float sums. The config's own XLA flags apply (the conv family's are set before
JAX starts).
"""

import argparse
import contextlib
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import train_speed as T  # noqa: E402
from hlo_work import program_work  # noqa: E402
from timing import load_warning, timed, wait_for_idle  # noqa: E402

FORMS = ('vae_jax', 'optax', 'none')


def norm_fn(form):
    import jax.numpy as jnp
    import optax

    from vae_jax import optim
    return {'vae_jax': optim.global_norm, 'optax': optax.global_norm,
            'none': lambda grads: jnp.zeros([], jnp.float32)}[form]


@contextlib.contextmanager
def step_norm(form):
    """While active, train steps traced take their `grad_norm` metric from `form`'s norm."""
    from vae_jax import steps
    saved = steps.global_norm
    steps.global_norm = norm_fn(form)
    try:
        yield
    finally:
        steps.global_norm = saved


def runner(name, patch):
    """(the runner, its compiled program's `program_work`), the step traced inside `patch`."""
    filename, shape, _ = T.MODELS[name]
    config = T.load_config(filename)
    r = T.JaxRunner(config, shape, T.host_batches(config.batch_size, shape))
    with patch:  # traced and compiled here, patched: the call of k steps and
        r.run(2 * r.k + (r.k > 1))  # the single step (a block of n % k steps runs it)
        if r.k > 1:
            lowered = r.multi_step.lower(r.state, r.stacked, r.key, r.hparams)
        else:
            lowered = r.step.lower(r.state, r.batches[0], r.key, r.hparams)
        work = program_work(lowered.compile().as_text())
    return r, work


def compare(forms, patch, description, summarize, default_models='mlp,hvae'):
    """Parses the command line (`--models`, `--rounds`, `--steps`), sets the models' XLA flags,
    and times each model's step built once per form (`patch(form)`: a context manager) in
    rotating rounds. Returns [(model, steps per block, {form: [ms per step]}, {form:
    program_work}, summarize(model, {form: runner}))] and the other processes' loads; the
    runners are dropped before the next model is built."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--models', default=default_models)
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--steps', type=int, default=0,
                        help='steps per timed block; 0: 150 for MLP models, 15 for conv')
    args = parser.parse_args()
    models = args.models.split(',')
    flags = {T.config_flags(m) for m in models}
    if len(flags) > 1:
        sys.exit('error: these models set different XLA flags; time them in separate runs')
    from vae_jax import xla_setup
    xla_setup.apply_config_flags(flags.pop())
    import jax
    print(f'jax {jax.__version__}, {args.rounds} rotating rounds per model')
    rows, loads = [], []
    for name in models:
        runners, work = {}, {}
        for form in forms:
            runners[form], work[form] = runner(name, patch(form))
        n = args.steps or (15 if name == 'conv' else 150)
        ms = {form: [] for form in forms}
        for i in range(args.rounds):
            k = i % len(forms)
            for form in forms[k:] + forms[:k]:
                wait_for_idle(10)
                ms[form].append(1e3 / timed(runners[form].run, n, loads))
        rows.append((name, n, ms, work, summarize(name, runners)))
        del runners
    return rows, loads


def parameter_differences(model, runners):
    """{form: the largest absolute difference between its runner's parameters and the first
    form's, after the same steps from the same start (0: the same bit for bit)} for every form
    after the first: a `summarize` for `compare` (the model's name unused)."""
    import jax
    import numpy as np
    (_, first), *others = runners.items()
    ours = jax.tree.leaves(first.state.params)
    return {form: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                      for x, y in zip(ours, jax.tree.leaves(r.state.params)))
            for form, r in others}


def print_table(rows, label, base):
    """The table of `compare`'s rows: `label` heads the forms' column; ratios to form `base`."""
    print(f'\n| model | {label} | kernels | f32 elements written |'
          f' ms per step (median) | min-max | {base} / this |')
    print('|---|---|---|---|---|---|---|')
    for name, n, ms, work, _ in rows:
        med = {form: statistics.median(v) for form, v in ms.items()}
        for form in ms:
            print(f'| {name} ({n} steps a block) | {form} | {work[form][0]} | {work[form][1]:,} | '
                  f'{med[form]:.3f} | {min(ms[form]):.3f}-{max(ms[form]):.3f} | '
                  f'{med[base] / med[form]:.2f}× |')


def norms(name, runners):
    """{form: norm} of the same tree, the vae_jax runner's parameters, by both forms."""
    import jax
    import numpy as np
    tree = jax.tree.map(lambda a: np.asarray(a[0]), runners['vae_jax'].state.params)
    return {form: float(norm_fn(form)(tree)) for form in ('vae_jax', 'optax')}


def main():
    rows, loads = compare(FORMS, step_norm, __doc__.split('\n')[0], norms)
    print_table(rows, 'grad_norm from', 'optax')
    print('\nThe two norms of the same tree (the parameters after the timed steps):')
    for name, _, _, _, values in rows:
        rel = abs(values['vae_jax'] - values['optax']) / values['optax']
        print(f'  {name}: vae_jax {values["vae_jax"]:.6f}, optax {values["optax"]:.6f} '
              f'(relative difference {rel:.1e})')
    if warning := load_warning(loads):
        print(warning)


if __name__ == '__main__':
    main()
