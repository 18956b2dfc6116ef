"""Datasets as random-access `Source`s, and deterministic host-sharded batches for pmap."""

from vae_jax.data.dsprites import DSpritesSource
from vae_jax.data.dsprites import factor_classes_to_index
from vae_jax.data.dsprites import factor_sizes
from vae_jax.data.dsprites import factor_values
from vae_jax.data.dsprites import FACTOR_NAMES
from vae_jax.data.dsprites import index_to_factor_classes
from vae_jax.data.dsprites import render
from vae_jax.data.dsprites import render_values
from vae_jax.data.dsprites import SHAPES
from vae_jax.data.pipeline import epoch_permutation
from vae_jax.data.pipeline import eval_batches
from vae_jax.data.pipeline import global_batch_indices
from vae_jax.data.pipeline import train_batches
from vae_jax.data.source import Source
from vae_jax.data.tfds_source import KNOWN_DATASETS
from vae_jax.data.tfds_source import resolve_data_dir
from vae_jax.data.tfds_source import TfdsSource
from vae_jax.data.toy2d import Toy2DSource
