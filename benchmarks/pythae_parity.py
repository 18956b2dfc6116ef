"""Pythae's trainer on the flax-parity VAE, with PyTorch's default initialisation and with
flax's, to locate the gap between vae_jax and Pythae on the same model.

The model and protocol of experiments/vae.py:epochs=10 (MLP 784-500-20, ReLU, Bernoulli,
Larochelle's binarized MNIST 50k train, Adam 1e-3, batch 128, 10 epochs); the number is the
single-sample −ELBO on the 10k test images of the final model. `--init=torch` keeps nn.Linear's
default (weights and biases U(±1/√fan_in)); `--init=lecun` re-initialises every layer as flax
does (truncated-normal weights of variance 1/fan_in, zero biases). Runs in its own venv with
pythae and torch (never a vae_jax dependency):

    python3 -m venv ../pythae-venv && ../pythae-venv/bin/pip install pythae
    ../pythae-venv/bin/python benchmarks/pythae_parity.py --seeds=3

`--job` is the peer of the README's main job in benchmarks/end_to_end.py: one whole process
that reads the data, trains one seed with PyTorch's initialisation and evaluates, printing a
JSON line {"neg_elbo", "seconds": {"data", "train", "eval"}}.
"""

import argparse
import gzip
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.pipelines import TrainingPipeline
from pythae.trainers import BaseTrainerConfig

RAW = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'raw' / 'binarized_mnist'


def load(split: str) -> np.ndarray:
    """Larochelle's split as float32 [n, 1, 28, 28] in {0, 1}. The .amat files hold one image
    per line, its 784 pixels as '0'/'1' separated by spaces: read as bytes, not np.loadtxt,
    which takes ~10 s for the training split."""
    with gzip.open(RAW / f'binarized_mnist_{split}.amat.gz', 'rb') as f:
        digits = np.frombuffer(f.read().replace(b' ', b'').replace(b'\n', b''), np.uint8)
    return (digits - ord('0')).astype(np.float32).reshape(-1, 1, 28, 28)


class Encoder(BaseEncoder):
    def __init__(self):
        super().__init__()
        self.hidden, self.mean, self.logvar = nn.Linear(784, 500), nn.Linear(500, 20), nn.Linear(500, 20)

    def forward(self, x):
        h = torch.relu(self.hidden(x.reshape(x.shape[0], -1)))
        return ModelOutput(embedding=self.mean(h), log_covariance=self.logvar(h))


class Decoder(BaseDecoder):
    def __init__(self):
        super().__init__()
        self.hidden, self.out = nn.Linear(20, 500), nn.Linear(500, 784)

    def forward(self, z):
        logits = self.out(torch.relu(self.hidden(z)))
        return ModelOutput(reconstruction=torch.sigmoid(logits).reshape(z.shape[0], 1, 28, 28))


def lecun_(module: nn.Module) -> None:
    """flax's default: weights ~ truncated N(0, 1/fan_in) (cut at 2σ, rescaled), zero biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            std = math.sqrt(1.0 / layer.in_features) / 0.87962566103423978
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.zeros_(layer.bias)


def run(init: str, seed: int, train, test) -> tuple[float, float]:
    torch.manual_seed(seed)
    model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=20, reconstruction_loss='bce'),
                encoder=Encoder(), decoder=Decoder())
    if init == 'lecun':
        lecun_(model)
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(output_dir=out, num_epochs=10, learning_rate=1e-3,
                                   per_device_train_batch_size=128,
                                   per_device_eval_batch_size=1000, seed=seed, no_cuda=True)
        start = time.monotonic()
        TrainingPipeline(training_config=config, model=model)(train_data=train)
        seconds = time.monotonic() - start
    model.eval()
    with torch.no_grad():
        losses = [model({'data': torch.from_numpy(test[i:i + 1000])}).loss.item()
                  for i in range(0, len(test), 1000)]
    return float(np.mean(losses)), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--inits', default='torch,lecun')
    parser.add_argument('--job', action='store_true', help='one seed, torch init, JSON out')
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.monotonic()
    train, test = load('train'), load('test')
    if args.job:
        data_s = time.monotonic() - start
        neg_elbo, train_s = run('torch', 0, train, test)
        eval_s = time.monotonic() - start - data_s - train_s
        print(json.dumps({'neg_elbo': neg_elbo, 'seconds': {
            'data': data_s, 'train': train_s, 'eval': eval_s}}))
        return
    rows = []
    for init in args.inits.split(','):
        for seed in range(args.seeds):
            neg_elbo, seconds = run(init, seed, train, test)
            rows.append((init, seed, neg_elbo, seconds))
            print(f'{init} seed {seed}: test -ELBO {neg_elbo:.3f} ({seconds:.0f} s)', flush=True)
    print('\n| init | seeds | test −ELBO (mean ± std) | runs |\n|---|---|---|---|')
    for init in args.inits.split(','):
        v = np.array([r[2] for r in rows if r[0] == init])
        print(f'| {init} | {len(v)} | {v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0:.2f} '
              f'| {", ".join(f"{x:.2f}" for x in v)} |')


if __name__ == '__main__':
    main()
