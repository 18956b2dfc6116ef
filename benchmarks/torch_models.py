"""PyTorch versions of the benchmarked vae_jax models: the same networks and losses, written the
way a PyTorch user would (NCHW, ConvTranspose2d decoders). Only the benchmarks import this; it
imports PyTorch alone (no JAX), so Pythae's and PyTorch's jobs do not pay for JAX's imports
(benchmarks/torch_beta_vae.py still imports vae_jax for its dSprites data, outside the
training it times)."""

import numpy as np
import torch
from torch import nn


class TorchMLP(nn.Module):
    def __init__(self, pixels=784, hidden=500, latents=20):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2 * latents))
        self.decoder = nn.Sequential(nn.Linear(latents, hidden), nn.ReLU(),
                                     nn.Linear(hidden, pixels))


class TorchConv(nn.Module):
    """Burgess et al. (2018) / disentanglement_lib, decoder as in PyTorch-VAE (ConvTranspose2d)."""

    def __init__(self, latents=10):
        super().__init__()
        conv = lambda i, o: nn.Conv2d(i, o, 4, 2, 1)
        up = lambda i, o: nn.ConvTranspose2d(i, o, 4, 2, 1)
        self.encoder = nn.Sequential(
            conv(1, 32), nn.ReLU(), conv(32, 32), nn.ReLU(), conv(32, 64), nn.ReLU(),
            conv(64, 64), nn.ReLU(), nn.Flatten(), nn.Linear(1024, 256), nn.ReLU(),
            nn.Linear(256, 2 * latents))
        self.decoder = nn.Sequential(
            nn.Linear(latents, 256), nn.ReLU(), nn.Linear(256, 1024), nn.ReLU(),
            nn.Unflatten(1, (64, 4, 4)), up(64, 64), nn.ReLU(), up(64, 32), nn.ReLU(),
            up(32, 32), nn.ReLU(), up(32, 1))


def gaussian_log_prob(z, mean, logvar):
    return -0.5 * (((z - mean) ** 2) * torch.exp(-logvar) + logvar + np.log(2 * np.pi)).sum(-1)


def bernoulli_log_lik(x, logits):
    return -nn.functional.binary_cross_entropy_with_logits(
        logits, x, reduction='none').flatten(1).sum(1)


class TorchHVAE(nn.Module):
    """Burda et al.'s two stochastic layers, as vae_jax.hierarchies.HVAE: tanh MLPs."""

    def __init__(self):
        super().__init__()
        mlp = lambda i, w, o: nn.Sequential(nn.Linear(i, w), nn.Tanh(), nn.Linear(w, w),
                                            nn.Tanh(), nn.Linear(w, o))
        self.q0, self.q1 = mlp(784, 200, 200), mlp(100, 100, 100)
        self.p0, self.dec = mlp(50, 100, 200), mlp(100, 200, 784)

    def loss(self, x):
        x = x.flatten(1)
        m1, v1 = self.q0(x).chunk(2, -1)
        h1 = m1 + torch.exp(0.5 * v1) * torch.randn_like(m1)
        m2, v2 = self.q1(h1).chunk(2, -1)
        h2 = m2 + torch.exp(0.5 * v2) * torch.randn_like(m2)
        pm, pv = self.p0(h2).chunk(2, -1)
        log_w = (bernoulli_log_lik(x, self.dec(h1)) + gaussian_log_prob(h1, pm, pv)
                 + gaussian_log_prob(h2, torch.zeros_like(h2), torch.zeros_like(h2))
                 - gaussian_log_prob(h1, m1, v1) - gaussian_log_prob(h2, m2, v2))
        return -log_w.mean()


class Gated(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.h, self.g = nn.Linear(i, o), nn.Linear(i, o)

    def forward(self, x):
        return self.h(x) * torch.sigmoid(self.g(x))


class TorchVampPrior(nn.Module):
    """Gated 300-300 encoder/decoder, 40 latents, K = 500 pseudo-inputs (the vampprior.py
    model), with the warm-up's β at 1."""

    def __init__(self, k=500, latents=40):
        super().__init__()
        self.enc = nn.Sequential(Gated(784, 300), Gated(300, 300))
        self.mean, self.logvar = nn.Linear(300, latents), nn.Linear(300, latents)
        self.dec = nn.Sequential(Gated(latents, 300), Gated(300, 300), nn.Linear(300, 784))
        self.u = nn.Parameter(0.05 + 0.01 * torch.randn(k, 784))

    def encode(self, x):
        h = self.enc(x)
        return self.mean(h), torch.clamp(self.logvar(h), -6.0, 2.0)

    def loss(self, x):
        x = x.flatten(1)
        mean, logvar = self.encode(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        pm, pv = self.encode(torch.clamp(self.u, 0.0, 1.0))  # [K, z]
        log_p = torch.logsumexp(gaussian_log_prob(z[:, None], pm[None], pv[None]), 1)
        log_p = log_p - np.log(len(pm))
        kl = gaussian_log_prob(z, mean, logvar) - log_p
        return (-bernoulli_log_lik(x, self.dec(z)) + kl).mean()
