"""The train step with vae_jax's ReLU (`activations.relu`: the derivative from the output, as a
product with its sign) against `jax.nn.relu` (a select against zero, from the pre-activation).

    python benchmarks/relu_grad.py                  # the conv β-VAE (~1.5 minutes)
    python benchmarks/relu_grad.py --models mlp     # the main job's MLP

For each model: the experiment's real pmapped train step, built with each ReLU (every ReLU of
`vae_jax.models`: the conv nets' and the MLPs' `model.activation = 'relu'`), as
`grad_norm.py` times its forms: the work of each compiled program (`hlo_work.program_work`,
per step), then ms per step in rotating rounds. Then whether the two runs' parameters, after the
same steps from the same start, are the same bit for bit.
"""

import contextlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import grad_norm as G  # noqa: E402
from timing import load_warning  # noqa: E402

FORMS = ('vae_jax', 'jax.nn')


@contextlib.contextmanager
def model_relu(form):
    """While active, the models traced use `form`'s ReLU."""
    import jax

    from vae_jax import activations, models
    fn = {'vae_jax': activations.relu, 'jax.nn': jax.nn.relu}[form]
    saved = models.relu, models.ACTIVATIONS['relu']
    models.relu = models.ACTIVATIONS['relu'] = fn
    try:
        yield
    finally:
        models.relu, models.ACTIVATIONS['relu'] = saved


def same_parameters(name, runners):
    """Whether the runners' parameters, after the same steps, are the same bit for bit."""
    import jax
    import numpy as np
    a, b = (jax.tree.leaves(runners[form].state.params) for form in FORMS)
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def main():
    rows, loads = G.compare(FORMS, model_relu, __doc__.split('\n')[0], same_parameters,
                            default_models='conv')
    G.print_table(rows, 'ReLU', 'jax.nn')
    print('\nParameters after the same steps from the same start:')
    for name, _, _, _, same in rows:
        print(f'  {name}: {"the same bit for bit" if same else "different"}')
    if warning := load_warning(loads):
        print(warning)


if __name__ == '__main__':
    main()
