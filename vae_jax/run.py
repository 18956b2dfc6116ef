"""`load_run(workdir)`: a finished (or running) run, ready to use in a notebook.

    run = vae_jax.load_run('runs/vae')
    x = run.sample(jax.random.key(0), 16)            # [16, 28, 28, 1] decoded means
    mean, logvar = run.encode(images)                # posterior parameters
    nll = -run.log_likelihood(jax.random.key(1), images, k=1000)   # IWAE bound, nats
"""

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from vae_jax import model_fns
from vae_jax.checkpoints import Checkpoints, DamagedCheckpoint
from vae_jax.configs import base_config
from vae_jax.errors import UserError
from vae_jax.keys import example_keys
from vae_jax.objectives import iwae_bound
from vae_jax.steps import TrainState, init_train_state
from vae_jax.workdir import RUN_INFO, read_config


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained model with its config; every method takes and returns batches.

    Attributes:
      workdir: the run's directory.
      config: its config (from config.json).
      fns: the model's functions (`model_fns.ModelFns`); `params` its parameters at
        checkpoint `step` (their moving average with `optim.ema_decay`), `model` its Flax
        module.
      state: the full TrainState (with the optimizer state) of that checkpoint.
      example_shape, num_classes: of the data it was trained on.
    """
    workdir: Path
    config: ml_collections.ConfigDict
    fns: model_fns.ModelFns
    state: TrainState
    example_shape: tuple
    num_classes: int

    @property
    def model(self):
        return self.fns.module

    @property
    def params(self) -> Any:
        """The parameters evaluation and sampling use: their moving average when the run kept
        one (`optim.ema_decay`), else the trained parameters (`state.params`)."""
        return self.state.eval_params

    @property
    def step(self) -> int:
        return int(self.state.step)

    def _labels(self, y, n: int) -> Optional[jax.Array]:
        if not self.config.model.conditional:
            return None
        if y is None:
            raise ValueError('this run is a conditional VAE: pass labels y')
        return jnp.broadcast_to(jnp.asarray(y, jnp.int32), (n,))

    @functools.cached_property
    def _encode(self):
        return jax.jit(self.fns.encode)

    @functools.cached_property
    def _decode_mean(self):
        return jax.jit(self.fns.decode_mean)

    @functools.cached_property
    def _sample_prior(self):
        return jax.jit(self.fns.sample_prior, static_argnums=2)

    def encode(self, x: jax.Array, y=None) -> tuple[jax.Array, jax.Array]:
        """x: [b, *example_shape] -> (mean [b, Z], logvar [b, Z]): the posterior mean (with a
        flow or a hierarchy, the latent that zero noise maps to; `ModelFns.encode`)."""
        return self._encode(self.params, jnp.asarray(x), self._labels(y, len(x)))

    def decode(self, z: jax.Array, y=None) -> jax.Array:
        """z: [b, z] -> E[x | z]: [b, *example_shape]."""
        return self._decode_mean(self.params, jnp.asarray(z), self._labels(y, len(z)))

    def reconstruct(self, x: jax.Array, y=None) -> jax.Array:
        """Decoded posterior means: [b, *example_shape] -> [b, *example_shape]."""
        mean, _ = self.encode(x, y)
        return self.decode(mean, y)

    def sample(self, key: jax.Array, n: int, y=None, temperature: float = 1.0) -> jax.Array:
        """n decoded draws from the prior: [n, *example_shape] (y: one label or [n] labels),
        the prior's noise scaled by `temperature` (< 1 trades diversity for quality)."""
        z = self._sample_prior(self.params, key, n, jnp.float32(temperature))
        return self.decode(z, y)

    def log_likelihood(self, key: jax.Array, x: jax.Array, y=None, k: int = 1000,
                       chunk: Optional[int] = None) -> jax.Array:
        """Importance-weighted lower bound on log p(x) with k samples: [b] nats.

        Example i draws its samples from fold_in(key, i). x must be what the model was trained
        on (binary pixels for a Bernoulli model on binarized data).
        """
        chunk = min(chunk or self.config.eval.iwae_chunk, k)
        return self._iwae(k, chunk)(self.params, jnp.asarray(x), self._labels(y, len(x)),
                                    example_keys(key, jnp.arange(len(x))))

    @functools.cached_property
    def _iwae_fns(self) -> dict:
        return {}

    def _iwae(self, k: int, chunk: int):
        """The jitted bound for (k, chunk), compiled once per pair."""
        if (k, chunk) not in self._iwae_fns:
            self._iwae_fns[k, chunk] = jax.jit(functools.partial(
                iwae_bound, fns=self.fns, num_samples=k, chunk=chunk))
        return self._iwae_fns[k, chunk]


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The config a run was trained with (its workdir's config.json), merged into the current
    base config so that fields added since then take their defaults."""
    config = read_config(Path(workdir), base_config())
    config.unlock()
    return config


def load_run(workdir: str | Path, step: Optional[int] = None) -> Run:
    """Loads the config, data shapes and the checkpoint (the newest good one, or `step`) of a
    run; a damaged newest checkpoint is skipped with a warning (and left where it is: a run
    that may still be training owns its workdir)."""
    workdir = Path(workdir).expanduser().absolute()
    config = load_config(workdir)
    info_path = workdir / RUN_INFO
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        shape, num_classes = tuple(info['example_shape']), info['num_classes']
    else:  # a run from before run.json existed: ask the data
        from vae_jax.data.registry import make_sources
        train_source, _ = make_sources(config.data, config.seed)
        shape, num_classes = train_source.example_shape, train_source.num_classes
    fns = model_fns.build(config.model, shape, num_classes)
    template = init_train_state(jax.random.key(0), fns, config, shape, 1)
    ckpt = Checkpoints(workdir, config.keep_checkpoints, read_only=True)
    try:
        available = ckpt.steps()
        if not available:
            raise UserError(f'{workdir} has no checkpoint yet')
        if step is not None and step not in available:
            raise UserError(f'no checkpoint of step {step} in {workdir}; have {sorted(available)}')
        state = None
        for s in [step] if step is not None else available:
            try:
                state = ckpt.read(template, s)
                break
            except DamagedCheckpoint as e:
                logging.warning('checkpoint of step %d in %s skipped: %s', s, workdir, e)
        if state is None:
            raise UserError(f'no readable checkpoint in {workdir} (tried steps '
                            f'{", ".join(map(str, [step] if step is not None else available))})')
    finally:
        ckpt.close()
    return Run(workdir, config, fns, state, shape, num_classes)
