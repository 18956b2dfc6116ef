"""The train step with vae_jax's ReLUs (`activations.relu`: the derivative from the output, as a
product with its sign; the conv decoder's `activations.relu_minus_zero`, the same with -0.0 for
its zeros) against `jax.nn.relu` (a select against zero, from the pre-activation) everywhere,
and against `activations.relu` in the conv decoder too ('shared zero': XLA then merges the
decoder's zero broadcasts with the encoder's and writes them out as arrays).

    python benchmarks/relu_grad.py                  # the conv β-VAE (~1.5 minutes)
    python benchmarks/relu_grad.py --models mlp     # the main job's MLP

For each model: the experiment's real pmapped train step, built with each form (every ReLU of
`vae_jax.models`: the conv nets' and the MLPs' `model.activation = 'relu'`), as
`grad_norm.py` times its forms: the work of each compiled program (`hlo_work.program_work`,
per step), then ms per step in rotating rounds. Then how far each form's parameters, after the
same steps from the same start, are from vae_jax's (0: the same bit for bit).
"""

import contextlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import grad_norm as G  # noqa: E402
from timing import load_warning  # noqa: E402

FORMS = ('vae_jax', 'jax.nn', 'shared zero')


@contextlib.contextmanager
def model_relu(form):
    """While active, the models traced use `form`'s ReLUs."""
    import jax

    from vae_jax import activations, models
    encoder, decoder = {'vae_jax': (activations.relu, activations.relu_minus_zero),
                        'jax.nn': (jax.nn.relu, jax.nn.relu),
                        'shared zero': (activations.relu, activations.relu)}[form]
    saved = models.relu, models.ACTIVATIONS['relu'], models.relu_minus_zero
    models.relu = models.ACTIVATIONS['relu'] = encoder
    models.relu_minus_zero = decoder
    try:
        yield
    finally:
        models.relu, models.ACTIVATIONS['relu'], models.relu_minus_zero = saved


def main():
    rows, loads = G.compare(FORMS, model_relu, __doc__.split('\n')[0],
                            G.parameter_differences, default_models='conv')
    G.print_table(rows, 'ReLU', 'jax.nn')
    print("\nParameters after the same steps from the same start, against vae_jax's:")
    for name, _, _, _, same in rows:
        for form, diff in same.items():
            print(f'  {name}, {form}: ' + ('the same bit for bit' if diff == 0 else
                                          f'differ by at most {diff:.2g}'))
    if warning := load_warning(loads):
        print(warning)


if __name__ == '__main__':
    main()
