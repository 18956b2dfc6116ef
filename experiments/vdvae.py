"""A small VDVAE-style top-down hierarchy (Child 2021; NVAE, Vahdat & Kautz 2020) on static
binarized MNIST (vae_jax/vdvae.py).

Network: 28×28 padded to 32 and rearranged 2×2 space-to-depth to 16×16×4 (`model.vdvae_stem`);
bottom-up residual blocks at 16, 8, 4; top-down from a learned 4×4 state with two latent groups
of 8 channels at each of 4×4, 8×8 and 16×16 (6 groups, 5,376 latents), width 32, bottleneck 8;
shared top-down path for inference and generation; a 1×1 convolution to the Bernoulli logits of
each 2×2 pixel block. Training aids of those papers: KL warm-up (β from 0 over `warmup` steps), gradient
clipping at norm 200 and skipping of updates above norm 400 (VDVAE's defaults; here never more
than 10 in a row), an EMA of the parameters (0.999) used for evaluation and sampling. Adam 1e-3
with a 200-step warm-up and cosine decay, batch 100.

Published reference for scale: Efficient-VDVAE reports -log p(x) = 79.09 on binarized MNIST
with a far larger model (tens of groups, hundreds of epochs on GPUs); this config is the
architecture at a size a CPU trains in minutes, not that model.

    python launch.py --config=experiments/vdvae.py --workdir=runs/vdvae
    python launch.py --config=experiments/vdvae.py:quick --workdir=runs/vdvae_quick
    python launch.py --mode=eval --workdir=runs/vdvae_quick

Arguments (checked against `ARGS`): `epochs=E` (default 100), `steps=N` (overrides epochs),
`width=C` (default 32), `zdim=Z` (default 8), `groups=G` per resolution (default 2), `quick`
(1,500 steps, warm-up 500, a 200-sample bound on 500 test images, a 10-sample bound as the
anomaly score).

Runtime on a 2-core CPU: ~7 steps/s at batch 100 (XLA:CPU's small convolutions; see
benchmarks/train_speed.py), so `quick` trains in about 4 minutes.
"""

from vae_jax.configs import base_config, parse_arg

ARGS = dict(epochs=100.0, steps=0, width=32, zdim=8, groups=2, quick=False)


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ARGS)
    c = base_config()
    c.data.name = 'binarized_mnist'
    c.model.name = 'vdvae'
    c.model.vdvae_width = args.width
    c.model.vdvae_middle = max(args.width // 4, 1)
    c.model.vdvae_zdim = args.zdim
    c.model.vdvae_groups = args.groups
    c.model.vdvae_blocks = 1
    c.model.vdvae_min_res = 4
    c.model.vdvae_max_latent_res = 16
    c.model.vdvae_stem = 2
    c.optim.learning_rate = 1e-3
    c.optim.schedule = 'warmup_cosine'
    c.optim.warmup_steps = 200
    c.optim.skip_threshold = 3000.0
    c.optim.skip_max_consecutive = 10
    c.optim.ema_decay = 0.999
    c.batch_size = 100
    c.num_epochs = args.epochs
    c.objective.kl_warmup_steps = 10_000
    c.log_every = 500
    c.checkpoint_every = 5000
    if args.steps:
        c.num_epochs, c.num_steps = 0.0, args.steps
        c.objective.kl_warmup_steps = min(c.objective.kl_warmup_steps, args.steps // 3)
    if args.quick:
        c.num_epochs, c.num_steps = 0.0, 1500
        c.objective.kl_warmup_steps = 500
        c.eval.iwae_samples, c.eval.iwae_examples = 200, 500
        c.eval.anomaly_samples = 10
        c.eval.probe_train_examples = 2000
        c.eval_examples = 1000
    return c
