"""Time of the k = 5000 IWAE bound on the 10k binarized-MNIST test set (experiments/vae.py model).

    python benchmarks/likelihood_speed.py [--examples 10000] [--workdir runs/vae]

Times `evaluate_likelihood` (streamed over chunks of samples, one decoder call per chunk,
everything from the call to the returned numbers: compilation, data, the pass) against a
straightforward reference on `--reference_examples` examples, extrapolated to `--examples`:
one jitted call per example that decodes all k samples at once (memory O(k)) and uses the
library's Bernoulli log-likelihood and `jax.nn.logsumexp`. Both draw the same samples
(`keys.iwae_sample_key`), so their bounds agree to float32 rounding; the script prints
the largest difference. Parameters are random (seed 0) unless `--workdir` names a trained
run; they do not change the amount of work. The reference runs after `evaluate_likelihood`
has set glibc's malloc thresholds (`retain_freed_memory`), so both run under the same ones.

Prints one row per implementation, and the share of the machine other processes used while
it ran: on a shared 2-core machine that is the main source of noise.

Measured on a 2-core AMD EPYC VM (1 CPU device), k = 5000, all 10,000 test images, batch 500,
chunk 4, the parameters of `experiments/vae.py:epochs=5` (NLL 100.38, -ELBO 106.25 nats):

    other cores   streamed (whole run)   reference (100 examples, extrapolated)   ratio
    0.16 / 0.01   196 s (255k samples/s)   913 s                                   4.7
    0.62 / 0.93   230 s                   2612 s                                  11.4

Before `retain_freed_memory` the streamed run took 293 s (other cores 0.05), a third of its
CPU time page-faulting. The whole script takes about 4.5 minutes.
"""

import argparse
import functools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Run from a checkout, uninstalled.

import jax
import jax.numpy as jnp
import numpy as np

from experiments import vae
from vae_jax import distributions as D
from vae_jax import model_fns, optim, steps
from vae_jax.data import TfdsSource
from vae_jax.evaluate.likelihood import evaluate_likelihood
from vae_jax.keys import example_keys, iwae_sample_key
from vae_jax.objectives import iwae_bound

_DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'tfds'


class Timer:
    """Wall seconds of a `with` block, and the cores other processes used during it."""

    def __enter__(self):
        self._start = (time.perf_counter(), *_cpu_seconds())
        return self

    def __exit__(self, *exc):
        wall, machine, own = (b - a for a, b in zip(self._start, (time.perf_counter(),
                                                                  *_cpu_seconds())))
        self.seconds, self.other_cores = wall, max(0.0, machine - own) / wall


def _cpu_seconds():
    """(busy CPU seconds of the whole machine, of this process) so far (Linux)."""
    with open('/proc/stat') as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # minus idle and iowait
    return busy / os.sysconf('SC_CLK_TCK'), sum(os.times()[:2])


def reference_bound(fns, params, x, key, k):
    """One example, all k samples decoded at once: x [...], key [] -> [] nats."""
    mean, logvar = (a[0] for a in fns.encode(params, x[None]))
    z = jax.vmap(lambda j: D.reparameterize(iwae_sample_key(key, j), mean, logvar))(
        jnp.arange(k))
    out = fns.decode(params, z)

    def log_weight(z, out):
        return (D.bernoulli_log_likelihood(x, out[..., 0]) + D.standard_normal_log_prob(z)
                - D.gaussian_log_prob(z, mean, logvar))

    return jax.nn.logsumexp(jax.vmap(log_weight)(z, out)) - jnp.log(k)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data_dir', default=os.environ.get('VAE_JAX_TFDS_DIR', _DEFAULT_DIR))
    parser.add_argument('--examples', type=int, default=10_000)
    parser.add_argument('--samples', type=int, default=5000, help='k')
    parser.add_argument('--chunk', type=int, default=0, help='0: the config default')
    parser.add_argument('--batch', type=int, default=0, help='0: the config eval_batch_size')
    parser.add_argument('--reference_examples', type=int, default=40)
    parser.add_argument('--workdir', default='', help='a trained run; default random params')
    args = parser.parse_args()

    if args.workdir:
        from vae_jax.run import load_run
        run = load_run(args.workdir)
        config, fns, params = run.config, run.fns, run.params
        what = f'{args.workdir} step {run.step}'
    else:
        config = vae.get_config()
        fns = model_fns.build(config.model, (28, 28, 1), 10)
        params = steps.create_train_state(jax.random.key(0), fns, optim.make_optimizer(
            config.optim, 1), (28, 28, 1)).params
        what = 'random (seed 0)'
    config.eval.iwae_samples, config.eval.iwae_examples = args.samples, args.examples
    config.eval.iwae_chunk = args.chunk or config.eval.iwae_chunk
    config.eval_batch_size = args.batch or config.eval_batch_size
    source = TfdsSource('binarized_mnist', 'test', data_dir=str(args.data_dir))
    n, k, key = min(args.examples, source.num_examples), args.samples, jax.random.key(1)
    print(f'k={k}, {n} examples, batch {config.eval_batch_size}, chunk {config.eval.iwae_chunk}'
          f', {jax.local_device_count()} device(s), {os.cpu_count()} cores, params {what}')

    every = max(1, round(n / 10 / config.eval_batch_size)) * config.eval_batch_size

    def report(done, total):
        if done == total or done % every == 0:
            print(f'  {done}/{total} examples, {time.perf_counter() - start:.0f} s', flush=True)

    start = time.perf_counter()
    with Timer() as stream:
        result = evaluate_likelihood(params, fns, source, config, key, progress=report)
    print(f'test NLL {result["nll"]:.3f} nats (k={k}), -ELBO {result["neg_elbo"]:.3f}')

    m = min(args.reference_examples, n)
    ref_fn = jax.jit(lambda p, x, key: reference_bound(fns, p, x, key, k))
    images = source.get_batch(np.arange(m))['image']
    keys = example_keys(key, jnp.arange(m))
    ref_fn(params, images[0], keys[0]).block_until_ready()  # compile outside the timing
    with Timer() as ref:
        ref_values = np.array([float(ref_fn(params, images[i], keys[i])) for i in range(m)])
    streamed = jax.jit(functools.partial(
        iwae_bound, fns=fns, num_samples=k, chunk=config.eval.iwae_chunk))(
            params, jnp.asarray(images), None, keys)
    print(f'reference vs streamed bound on {m} examples: mean {ref_values.mean():.4f} vs '
          f'{np.mean(streamed):.4f} nats, largest difference '
          f'{np.abs(ref_values - streamed).max():.1e}')

    rows = [('streamed (evaluate_likelihood)', n, stream.seconds, stream.seconds,
             stream.other_cores),
            ('reference (per example, all k)', m, ref.seconds, ref.seconds * n / m,
             ref.other_cores)]
    print(f'\n{"implementation":<32}{"timed ex.":>10}{"seconds":>9}{"ex./s":>8}'
          f'{"samples/s":>11}{f"s for {n}":>12}{"ratio":>7}{"other cores":>13}')
    for name, count, seconds, full, other in rows:
        print(f'{name:<32}{count:>10}{seconds:>9.1f}{count / seconds:>8.1f}'
              f'{count * k / seconds:>11.0f}{full:>12.0f}{full / rows[0][3]:>7.2f}{other:>13.2f}')


if __name__ == '__main__':
    main()
