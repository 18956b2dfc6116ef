"""The PyTorch peer of `experiments/beta_vae.py:quick`'s training: the same conv VAE (Burgess et
al. 2018, decoder as PyTorch users write it, ConvTranspose2d), loss (Bernoulli summed over
pixels + β·KL, mean over the batch), optimizer (Adam 5e-4), batch (64), steps (600) and data
(vae_jax's procedural dSprites training split, uniformly drawn batches).

    python benchmarks/torch_beta_vae.py     # prints a JSON line; see benchmarks/end_to_end.py

Reports {"neg_elbo": the single-sample −ELBO of the final model on the run's eval split
(the 1,000 held-out factor combinations the quick run evaluates), "seconds": {"data", "train",
"eval"}}. Needs PyTorch (the `bench` extra).
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from torch_models import TorchConv, bernoulli_log_lik  # noqa: E402


def neg_elbo(model, x, beta=1.0):
    """Per-example −log p(x|z) + β·KL for one posterior sample; x: [b, 1, 64, 64]."""
    mean, logvar = model.encoder(x).chunk(2, dim=-1)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    logits = model.decoder(z).reshape(x.shape)
    kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(1)
    return -bernoulli_log_lik(x, logits) + beta * kl


def main(steps=600, batch=64, lr=5e-4, beta=4.0):
    torch.set_num_threads(2)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    from vae_jax.configs import dsprites_config  # vae_jax's own config and data
    from vae_jax.data.registry import make_sources
    config = dsprites_config(quick=True)
    assert (config.num_steps, config.batch_size, config.optim.learning_rate) == (steps, batch, lr)
    train, evaluation = make_sources(config.data, config.seed)
    rng = np.random.default_rng(0)
    batches = (torch.from_numpy(train.get_batch(rng.integers(0, train.num_examples, batch))
                                ['image']).permute(0, 3, 1, 2).contiguous()
               for _ in range(steps))
    eval_x = torch.from_numpy(evaluation.get_batch(np.arange(config.eval_examples))['image'])
    eval_x = eval_x.permute(0, 3, 1, 2).contiguous()
    data_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = TorchConv()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    render_s = 0.0
    for _ in range(steps):
        r0 = time.perf_counter()
        x = next(batches)  # rendered on the fly, as vae_jax's pipeline does (in its thread)
        render_s += time.perf_counter() - r0
        loss = neg_elbo(model, x, beta).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    with torch.no_grad():
        result = float(torch.cat([neg_elbo(model, eval_x[i:i + 500])
                                  for i in range(0, len(eval_x), 500)]).mean())
    print(json.dumps({'neg_elbo': result, 'seconds': {
        'data': data_s, 'train': train_s, 'render_in_train': render_s,
        'eval': time.perf_counter() - t0}}))


if __name__ == '__main__':
    main()
