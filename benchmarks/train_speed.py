"""Training throughput of the experiment models, JAX (the real pmapped step) vs PyTorch.

    python benchmarks/train_speed.py                       # mlp, conv: 5 rounds, ~2 s blocks
    python benchmarks/train_speed.py --quick --models mlp  # 3 rounds, ~0.5 s per block
    python benchmarks/train_speed.py --models hvae,vampprior,iaf,vdvae   # the richer models
    python benchmarks/train_speed.py --models hvae,vampprior --steps_per_execution 10

The richer models (experiments/hvae.py at the paper's batch 20, vampprior.py, iaf.py,
vdvae.py) tell what a long run of each costs; `hvae` and `vampprior` have PyTorch references of
the same network and loss, `iaf` and `vdvae` are timed in JAX only (no ratio).

Needs PyTorch (an optional benchmark extra, never a runtime dependency of vae_jax):
`pip install torch` (CPU wheel). Takes about 1.5 minutes on an idle 2-core CPU (40 s with
--quick), up to a few minutes more on a busy one (each timed block waits up to 15 s for quiet).

JAX side: `experiments/vae.py` (MLP 784-500-20, batch 128, Adam 1e-3) and
`experiments/beta_vae.py` (Burgess et al. conv net on 64×64×1, β=4, batch 64, Adam 1e-4),
built by `model_fns.build` and trained by `steps.pmapped_steps` on one device with batches shaped
as the data pipeline yields them, in calls of the config's `steps_per_execution` steps
(`steps.pmapped_multi_step`) as the training loop makes them (vae.py: 10; a block of n steps is
n // k such calls and n % k single steps); configs of k > 1 are also timed at one step per call. PyTorch side: the same architectures, loss (Bernoulli, summed
over pixels, analytic KL, mean over the batch) and optimizer, written the way a PyTorch user
would (ConvTranspose2d decoder). Both are timed in alternating rounds so machine noise hits both
alike, each block after waiting (up to 15 s) for other processes to go quiet; the table gives
the median over rounds, and how many cores other processes used meanwhile. Compilation is
excluded (it is printed).
"""

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # Run from a checkout, uninstalled.

import jax
import numpy as np

from timing import block_size, load_warning, timed, wait_for_idle
from vae_jax import xla_setup
from vae_jax.model_fns import build as build_model_fns
from vae_jax.optim import make_optimizer
from vae_jax.steps import (create_train_state, hyperparams, pmapped_multi_step, pmapped_steps,
                           replicate, train_step)

try:
    import torch
    from torch_models import TorchConv, TorchHVAE, TorchMLP, TorchVampPrior, bernoulli_log_lik
except ImportError:  # Only the benchmarks need it; main() refuses to run without it.
    torch = None  # the module still imports: accelerator_check.py then times JAX alone

# Model name -> (experiment config, example shape, target for JAX/PyTorch steps/s, or None
# when there is no PyTorch reference).
MODELS = {
    'mlp': ('vae.py', (28, 28, 1), 1.5),
    'conv': ('beta_vae.py', (64, 64, 1), 1.2),
    'hvae': ('hvae.py', (28, 28, 1), 1.0),
    'vampprior': ('vampprior.py', (28, 28, 1), 1.0),
    'iaf': ('iaf.py', (28, 28, 1), None),
    'vdvae': ('vdvae.py', (28, 28, 1), None),
}
NUM_BATCHES = 4  # distinct batches kept on device and cycled through


def load_config(filename):
    spec = importlib.util.spec_from_file_location(filename[:-3], ROOT / 'experiments' / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def host_batches(batch, shape, seed=0):
    """Binary images in {0, 1} (as binarized MNIST / dSprites), labels and global indices."""
    rng = np.random.default_rng(seed)
    return [{'image': (rng.random((batch, *shape)) < 0.3).astype(np.float32),
             'label': rng.integers(0, 10, batch).astype(np.int32),
             'index': np.arange(batch, dtype=np.int32)} for _ in range(NUM_BATCHES)]


class JaxRunner:
    """The experiment's real train step, pmapped over one local device, in calls of the
    config's `steps_per_execution` steps (k), as the training loop makes them."""

    def __init__(self, config, shape, batches, step_fn=train_step, k=None):
        """k: steps per call; None = the config's `steps_per_execution`."""
        devices = jax.local_devices()[:1]
        self.fns = fns = build_model_fns(config.model, shape, num_classes=10)
        self.tx = tx = make_optimizer(config.optim, total_steps=1_000_000)
        state = create_train_state(jax.random.key(0), fns, tx, shape)
        self.state = replicate(state, devices)
        self.step, _ = pmapped_steps(fns, config, devices, step_fn=step_fn)
        self.k = k or config.steps_per_execution
        self.multi_step = pmapped_multi_step(fns, config, devices, step_fn=step_fn)
        self.key = jax.random.key(1)
        self.hparams = hyperparams(config)
        # Leading axis 1 = the local device axis the pipeline adds; placed once so the timed
        # loop measures the step, not host-to-device copies.
        self.batches = [jax.device_put({k: v[None] for k, v in b.items()}, devices[0])
                        for b in batches]
        self.stacked = jax.device_put(  # [1, k, b, ...]: batch i % NUM_BATCHES at position i
            {name: np.stack([b[name] for b in batches * self.k][:self.k])[None]
             for name in batches[0]}, devices[0])

    def run(self, n):
        """n steps: n // k calls of k steps, then n % k calls of one."""
        for _ in range(n // self.k if self.k > 1 else 0):
            self.state, metrics = self.multi_step(self.state, self.stacked, self.key,
                                                  self.hparams)
            metrics = jax.tree.map(lambda m: m[:, -1], metrics)
        for i in range(n % self.k if self.k > 1 else n):
            self.state, metrics = self.step(self.state, self.batches[i % NUM_BATCHES], self.key,
                                            self.hparams)
        jax.block_until_ready((self.state, metrics))
        return float(np.mean(metrics['loss']))  # [devices] (or [devices, points])


class TorchRunner:
    """The PyTorch reference of model `name`, trained on `device` ('cpu', 'cuda', ...)."""

    def __init__(self, config, name, batches, device='cpu'):
        torch.manual_seed(0)
        self.device = torch.device(device)
        self.model = {'mlp': TorchMLP, 'conv': lambda: TorchConv(config.model.latents),
                      'hvae': TorchHVAE, 'vampprior': TorchVampPrior}[name]().to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.optim.learning_rate)
        self.beta = config.objective.beta
        # NCHW (PyTorch's layout) for the conv net; the MLP flattens either way.
        self.batches = [torch.from_numpy(b['image']).permute(0, 3, 1, 2).contiguous()
                        .to(self.device) for b in batches]

    def train_step(self, x):
        if hasattr(self.model, 'loss'):
            loss = self.model.loss(x)
        else:
            mean, logvar = self.model.encoder(x).chunk(2, dim=-1)
            z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
            logits = self.model.decoder(z).reshape(x.shape)
            kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)
            loss = (-bernoulli_log_lik(x, logits) + self.beta * kl.sum(1)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss

    def run(self, n):
        for i in range(n):
            loss = self.train_step(self.batches[i % NUM_BATCHES])
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)  # kernels run asynchronously, as JAX's do
        return loss.item()


ONE_STEP = 'jax, 1 step per call'


def benchmark(name, rounds, block_s, device='cpu', idle_wait_s=15.0, deadline=None,
              one_step_side=False, k=None):
    """({framework: [steps/s per round]}, {framework: [other processes' cores]}, batch,
    {framework: seconds of the first step, compilation included}).

    PyTorch runs on `device` (JAX on its default backend's first device), and only where it is
    installed. With a `deadline` (a time.perf_counter() value), rounds stop once the next one
    would end past it; the first round always runs. With `one_step_side`, a config of more
    than one step per call is also timed at one step per call (framework `ONE_STEP`). `k`:
    steps per call instead of the config's.
    """
    filename, shape, _ = MODELS[name]
    config = load_config(filename)
    batches = host_batches(config.batch_size, shape)
    runners = {'jax': JaxRunner(config, shape, batches, k=k)}
    if one_step_side and runners['jax'].k > 1:
        runners[ONE_STEP] = JaxRunner(config, shape, batches, k=1)
    if MODELS[name][2] is not None and torch is not None:
        runners['torch'] = TorchRunner(config, name, batches, device)
    steps, first = {}, {}
    for fw, runner in runners.items():
        t0 = time.perf_counter()
        runner.run(1)
        first[fw] = time.perf_counter() - t0
        runner.run(5 + 2 * getattr(runner, 'k', 1))  # settle allocators, caches; compile all
        wait_for_idle(idle_wait_s)
        steps[fw] = block_size(runner.run, block_s)  # same wall time per block for both
        loss = runner.run(1)
        print(f'  {name} {fw}: first step (compile) {first[fw]:.2f} s, {steps[fw]} steps per '
              f'block, loss {loss:.1f}', flush=True)
        assert np.isfinite(loss), f'{name} {fw} loss is {loss}'
    rates = {fw: [] for fw in runners}
    load = {fw: [] for fw in runners}
    round_s = len(runners) * (block_s + idle_wait_s)  # a guess until one round is timed
    for r in range(rounds):
        if r and deadline is not None and time.perf_counter() + round_s > deadline:
            break
        t0 = time.perf_counter()
        order = list(runners) if r % 2 == 0 else list(runners)[::-1]  # no fixed first mover
        for fw in order:
            wait_for_idle(idle_wait_s)  # a busy shared machine slows OpenMP (torch) more than XLA
            rates[fw].append(timed(runners[fw].run, steps[fw], load[fw]))
        round_s = time.perf_counter() - t0
    return rates, load, config.batch_size, first


def config_flags(name):
    """The experiment config's xla_cpu_flags: what launch.py sets for that model's processes."""
    return load_config(MODELS[name][0]).get('xla_cpu_flags', '')


def measure_here(names, rounds, block_s, k=None):
    """[(name, batch, rates, load)] for `names`, in this process (whose XLA flags are set)."""
    rows = []
    for name in names:
        rates, load, batch, _ = benchmark(name, rounds, block_s, one_step_side=True, k=k)
        rows.append((name, batch, rates, load))
    return rows


def measure_in_child(names, rounds, block_s, k=None):
    """measure_here in a fresh process with the models' config flags set as launch.py sets
    them (XLA reads its flags once, when it starts)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / 'rows.json'
        subprocess.run([sys.executable, __file__, '--models', ','.join(names), '--rounds',
                        str(rounds), '--block_s', str(block_s), '--rows_json', str(out),
                        *(['--steps_per_execution', str(k)] if k else [])],
                       check=True)
        return [tuple(row) for row in json.loads(out.read_text())]


def add_timing_args(parser: argparse.ArgumentParser) -> None:
    """--models, --quick, --rounds and a child's --block_s: the flags of the scripts that time
    train steps against PyTorch (this one, roofline.py)."""
    parser.add_argument('--models', default='mlp,conv', help='comma separated: mlp,conv')
    parser.add_argument('--quick', action='store_true', help='3 rounds of ~0.5 s blocks')
    parser.add_argument('--rounds', type=int, default=None)
    parser.add_argument('--block_s', type=float, default=None, help=argparse.SUPPRESS)


def timing_choices(parser, args, known) -> tuple[list[str], int, float]:
    """(model names, rounds, seconds per block) from `add_timing_args`' flags; exits with an
    error line for a model not in `known`, or when PyTorch is missing."""
    if torch is None:
        sys.exit(f'error: {Path(sys.argv[0]).name} needs PyTorch: pip install torch (the CPU '
                 f'wheel)')
    names = [m.strip() for m in args.models.split(',') if m.strip()]
    unknown = set(names) - set(known)
    if unknown:
        parser.error(f'unknown --models {sorted(unknown)}; choose from {sorted(known)}')
    return (names, args.rounds or (3 if args.quick else 5),
            args.block_s or (0.5 if args.quick else 2.0))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_timing_args(parser)
    parser.add_argument('--rows_json', default=None, help=argparse.SUPPRESS)  # a child's output
    parser.add_argument('--steps_per_execution', type=int, default=None,
                        help='steps per call for every model, instead of its config\'s')
    args = parser.parse_args()
    names, rounds, block_s = timing_choices(parser, args, MODELS)
    groups = {}  # config flags -> models: each group is timed in a process of its own flags
    for name in names:
        groups.setdefault(config_flags(name), []).append(name)
    if args.rows_json:  # a child: this process's flags are its group's
        (flags_,) = groups
        xla_setup.apply_config_flags(flags_)
        Path(args.rows_json).write_text(json.dumps(
            measure_here(names, rounds, block_s, args.steps_per_execution)))
        return

    print(f'jax {jax.__version__}, torch {torch.__version__}, torch.get_num_threads() = '
          f'{torch.get_num_threads()}, {rounds} rounds; each model in a process with its '
          f'config\'s XLA flags')
    rows = []
    for group in groups.values():
        rows += measure_in_child(group, rounds, block_s, args.steps_per_execution)
    rows.sort(key=lambda row: names.index(row[0]))
    loads = [x for *_, load in rows for v in load.values() for x in v]

    print('\n| model | batch | framework | steps/s (median) | min-max | images/s | other CPU '
          '| JAX/torch | target | met |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for name, batch, rates, load in rows:
        med = {fw: statistics.median(r) for fw, r in rates.items()}
        ratio = med['jax'] / med['torch'] if 'torch' in med else None
        target = MODELS[name][2]
        for fw in rates:
            other = f'{statistics.median(load[fw]):.2f}' if load[fw] else 'n/a'
            # OpenMP (torch) slows far more than XLA on a shared core: a busy block skews the ratio.
            noisy = ' (noisy)' if load_warning(sum(load.values(), [])) else ''
            if fw == ONE_STEP and 'torch' in med:
                last = f'{med[fw] / med["torch"]:.2f}× | | '
            elif fw != 'jax':
                last = ' | | '
            elif ratio is None:
                last = f'— | — | no PyTorch reference{noisy}'
            else:
                last = f'{ratio:.2f}× | ≥ {target}× | {"yes" if ratio >= target else "NO"}{noisy}'
            print(f'| {name} | {batch} | {fw} | {med[fw]:.1f} | {min(rates[fw]):.1f}-'
                  f'{max(rates[fw]):.1f} | {med[fw] * batch:.0f} | {other} | {last} |')
    print('\n"other CPU": median cores used by other processes during the timed blocks.')
    if warning := load_warning(loads):
        print(warning)
    flagged = [f'{name}: {flags_}' for flags_, group in groups.items() if flags_ for name in group]
    print('Notes: JAX times the experiment\'s pmapped train step (1 device, donated state, '
          'batches already on device; in calls of the config\'s steps_per_execution steps, '
          f'as the training loop makes them, and also one step per call: "{ONE_STEP}"), including its per-example key derivation and metrics, '
          'with vae_jax\'s XLA:CPU flags and the config\'s own'
          + (f' ({"; ".join(flagged)})' if flagged else '') + '. '
          'Both conv decoders are the paper\'s 4×4 stride-2 transposed convolutions: '
          'ConvTranspose2d in PyTorch, vae_jax.upsample.TransposedConvUpsample in JAX (on CPU '
          'one stride-1 2×2 convolution to all four output phases, the last layer one matmul '
          'and an overlap-add: upsample.upsample_conv); see benchmarks/upsampling.py. On CPU '
          'the conv layers\' weight gradients are vae_jax\'s own kernel where it is built '
          '(vae_jax.weight_gradient; VAE_JAX_NATIVE=0 for XLA\'s).')

if __name__ == '__main__':
    main()
