"""The base config every experiment starts from, its validation, and config arguments.

Every option is declared here so that `lock_config=True` turns a misspelt override
(`--config.bta=4`) into an error instead of a silently ignored field. Likewise `parse_arg`
checks the argument after the config file's colon (`beta_vae.py:quick,beta=8`) against the
names and types the experiment declares, so `:quik` is an error, not the full-length default.
"""

import difflib
import os

import ml_collections

from vae_jax import (flows, inits, likelihoods, models, objectives, optim, priors, upsample,
                     xla_setup)
from vae_jax.errors import UserError

DATASETS = ('mnist', 'fashion_mnist', 'binarized_mnist', 'dsprites', 'toy2d')
DSPRITES_SOURCES = ('procedural', 'tfds')
METRICS = ('beta_vae', 'factor_vae', 'mig', 'dci', 'sap')


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.batch_size = 128             # global batch, split evenly over all devices
    c.num_epochs = 10.0            # used when num_steps <= 0
    c.num_steps = 0
    c.log_every = 100              # steps between console/metric lines
    c.eval_every = 0               # steps between evals; 0 = once per epoch (and at the end)
    c.checkpoint_every = 1000      # steps between checkpoints (and at the end)
    c.keep_checkpoints = 3
    c.eval_batch_size = 500
    c.eval_examples = 0            # 0 = the whole eval split
    c.num_image_examples = 8       # inputs/reconstructions shown per eval
    # Train steps per call of the compiled step (`lax.scan` over that many batches): > 1 saves
    # each call's fixed cost, 8-20% of a small MLP step's time on CPU; 1 = one step per call.
    # Calls never cross a log, eval or checkpoint step (`loop.steps_in_call`). Changes rounding
    # only (`benchmarks/README.md`, "Several steps per call").
    c.steps_per_execution = 1
    # XLA flags for the CPU processes that train or evaluate this config, set by launch.py
    # before JAX starts (xla_setup.apply_config_flags): for flags that help this model only.
    c.xla_cpu_flags = ''

    c.data = ml_collections.ConfigDict()
    c.data.name = 'binarized_mnist'
    c.data.data_dir = ''           # '' = $TFDS_DATA_DIR, else TFDS's default
    c.data.train_split = 'train'
    c.data.eval_split = 'test'
    c.data.binarize = 'none'       # 'dynamic': pixels ~ Bernoulli(intensity), drawn per step
    c.data.toy_kind = 'pinwheel'   # toy2d only: 'pinwheel' | 'gaussian_mixture'
    c.data.toy_examples = 50_000
    c.data.holdout_class = -1      # >= 0: train without this class (anomaly detection); -1 = off
    c.data.dsprites_source = 'procedural'  # 'tfds': the real dSprites from the TFDS data_dir
    c.data.train_missing = 0.0     # > 0: training images lack this fraction of pixels (fixed, MCAR)
    c.data.train_perturb = 0.0     # > 0: training pixels replaced by noise at this rate (background model)

    c.model = ml_collections.ConfigDict()
    c.model.name = 'vae'           # a name in models.MODELS: 'vae' (one latent layer) or a hierarchy
    c.model.encoder = 'mlp'        # the networks of 'vae': a name in models.NETWORKS
    c.model.hidden = (500,)        # MLP widths (the decoder mirrors them)...
    c.model.decoder_hidden = ()    # ... unless these are given
    c.model.activation = 'relu'    # of the MLPs' hidden layers: a name in models.ACTIVATIONS
    c.model.decoder_activation = ''  # '' = model.activation
    c.model.conv_channels = (32, 64)
    c.model.kernel = 4
    c.model.upsample = 'transposed'  # conv decoder's ×2 layers: a name in upsample.UPSAMPLERS
    c.model.dense = 256
    c.model.latents = 20
    c.model.likelihood = 'bernoulli'  # a name in likelihoods.REGISTRY
    c.model.gaussian_scale = 0.1   # fixed σ of the 'gaussian' likelihood
    c.model.prior = 'standard_normal'  # a name in priors.REGISTRY
    c.model.prior_components = 10  # K of a mixture prior ('gaussian_mixture', 'vampprior')
    c.model.posterior = 'gaussian'  # a name in flows.REGISTRY: 'gaussian' or a flow ('iaf')
    c.model.flow_steps = 2         # IAF steps
    c.model.flow_hidden = 320      # IAF: MADE width, and the encoder's context size
    c.model.group_latents = (100, 50)  # 'hvae': latents of each stochastic layer, x-side first
    c.model.group_hidden = (200, 100)  # 'hvae': width of the deterministic layers below each
    c.model.group_depth = 2        # 'hvae': deterministic layers between stochastic ones
    c.model.vdvae_width = 32       # 'vdvae': channels of the residual state
    c.model.vdvae_middle = 8       # 'vdvae': bottleneck channels inside a residual block
    c.model.vdvae_zdim = 8         # 'vdvae': latent channels per group
    c.model.vdvae_blocks = 1       # 'vdvae': bottom-up residual blocks per resolution
    c.model.vdvae_groups = 2       # 'vdvae': latent groups per resolution
    c.model.vdvae_min_res = 4      # 'vdvae': the coarsest resolution
    c.model.vdvae_max_latent_res = 16  # 'vdvae': no latents at finer resolutions
    c.model.vdvae_stem = 1         # 'vdvae': space-to-depth factor before the hierarchy
    c.model.conditional = False
    c.model.init = 'lecun'         # dense layers of the MLP networks: a name in inits.NAMES

    # A name in objectives.REGISTRY, and the fields the registered objectives read, with the
    # defaults they declare (documented in each objective's module). A field the chosen
    # objective does not read must keep its default (`validate`).
    c.objective = ml_collections.ConfigDict()
    c.objective.name = 'elbo'
    for field, default in objectives.declared_fields().items():
        c.objective[field] = default

    # The FactorVAE discriminator (objectives/factor_vae.py): an MLP on z with its own Adam
    # (Kim & Mnih 2018, appendix).
    c.discriminator = ml_collections.ConfigDict()
    c.discriminator.hidden = (1000,) * 6
    c.discriminator.learning_rate = 1e-4
    c.discriminator.b1 = 0.5
    c.discriminator.b2 = 0.9

    c.optim = ml_collections.ConfigDict()
    c.optim.name = 'adam'
    c.optim.learning_rate = 1e-3
    c.optim.schedule = 'constant'
    c.optim.warmup_steps = 0
    c.optim.boundaries = (0.5,)    # 'piecewise': fractions of the steps where the rate drops...
    c.optim.decay = 0.1            # ... by this factor each time (PyTorch's MultiStepLR)
    c.optim.weight_decay = 0.0
    c.optim.eps = 1e-8             # Adam's ε
    c.optim.skip_threshold = 0.0   # skip steps whose gradient norm is above this; 0 = off
    c.optim.skip_max_consecutive = 10  # ... but never more than this many in a row
    c.optim.ema_decay = 0.0        # > 0: evaluate and sample with an EMA of the parameters
    c.optim.grad_clip = 0.0        # global-norm clipping; 0 = off

    # The importance-weighted bound on log p(x) (vae_jax.evaluate.likelihood).
    c.eval = ml_collections.ConfigDict()
    c.eval.iwae_samples = 5000     # k
    c.eval.iwae_chunk = 4          # samples per example decoded at once: memory ∝ batch × chunk
    c.eval.iwae_examples = 0       # 0 = the whole eval split
    c.eval.anomaly_samples = 100   # k of the IWAE bound used as an anomaly score
    c.eval.probe_train_examples = 10_000  # train-split posterior means for the linear probe

    # Disentanglement metrics (datasets with ground-truth factors), disentanglement_lib protocol.
    c.disentanglement = ml_collections.ConfigDict()
    c.disentanglement.metrics = METRICS  # () = none; computed at the end of training and by eval
    c.disentanglement.num_train = 10_000
    c.disentanglement.num_test = 5_000
    c.disentanglement.batch_size = 64    # BetaVAE / FactorVAE score: examples per vote
    c.disentanglement.num_variance_estimate = 10_000  # FactorVAE score
    c.disentanglement.num_bins = 20      # MIG's histogram discretization
    c.disentanglement.seed = 0
    return c


def _choice(value, name, options):
    if value not in options:
        raise UserError(f'unknown {name} {value!r}; choose one of {", ".join(options)}')


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises UserError naming the first bad field; run before anything touches the workdir."""
    xla_setup.check_flags(config.get('xla_cpu_flags', ''))
    _choice(config.data.name, 'data.name', DATASETS)
    _choice(config.model.encoder, 'model.encoder', tuple(models.NETWORKS))
    _choice(config.model.likelihood, 'model.likelihood', tuple(likelihoods.REGISTRY))
    _choice(config.model.prior, 'model.prior', tuple(priors.REGISTRY))
    _choice(config.model.name, 'model.name', tuple(models.MODELS))
    _choice(config.model.posterior, 'model.posterior', tuple(flows.REGISTRY))
    _choice(config.model.init, 'model.init', inits.NAMES)
    _choice(config.model.activation, 'model.activation', tuple(models.ACTIVATIONS))
    _choice(config.model.decoder_activation or config.model.activation,
            'model.decoder_activation', tuple(models.ACTIVATIONS))
    _choice(config.optim.name, 'optim.name', tuple(optim.OPTIMIZERS))
    _choice(config.optim.schedule, 'optim.schedule', tuple(optim.SCHEDULES))
    _choice(config.data.binarize, 'data.binarize', ('none', 'dynamic'))
    _choice(config.objective.name, 'objective.name', tuple(objectives.REGISTRY))
    _choice(config.data.dsprites_source, 'data.dsprites_source', DSPRITES_SOURCES)
    _choice(config.model.upsample, 'model.upsample', tuple(upsample.UPSAMPLERS))
    for metric in config.disentanglement.metrics:
        _choice(metric, 'disentanglement metric', METRICS)
    checks = [
        (config.model.latents > 0, f'model.latents must be positive, got {config.model.latents}'),
        (config.model.prior_components > 0, f'model.prior_components must be positive, got {config.model.prior_components}'),
        (len(config.model.hidden) > 0 and all(h > 0 for h in config.model.hidden), f'model.hidden must be one or more positive widths, got {tuple(config.model.hidden)}'),
        (all(h > 0 for h in config.model.decoder_hidden), f'model.decoder_hidden must be positive widths (or empty: mirror model.hidden), got {tuple(config.model.decoder_hidden)}'),
        (len(config.model.conv_channels) > 0 and all(h > 0 for h in config.model.conv_channels), f'model.conv_channels must be one or more positive counts, got {tuple(config.model.conv_channels)}'),
        (config.model.kernel > 0 and config.model.dense > 0, 'model.kernel and model.dense must be positive'),
        (config.model.encoder != 'conv' or config.model.upsample != 'transposed' or config.model.kernel % 2 == 0, f'model.upsample=transposed needs an even model.kernel, got {config.model.kernel}'),
        (config.model.flow_steps > 0 and config.model.flow_hidden > 0, 'model.flow_steps and model.flow_hidden must be positive'),
        (len(config.model.group_latents) > 0 and len(config.model.group_latents) == len(config.model.group_hidden) and all(v > 0 for v in (*config.model.group_latents, *config.model.group_hidden)), f'model.group_latents and model.group_hidden must be equally long lists of positive sizes, got {tuple(config.model.group_latents)} and {tuple(config.model.group_hidden)}'),
        (config.optim.skip_threshold >= 0 and config.optim.skip_max_consecutive >= 0, 'optim.skip_threshold and optim.skip_max_consecutive must be >= 0'),
        (all(0 < f < 1 for f in config.optim.boundaries) and 0 < config.optim.decay <= 1, f'optim.boundaries must be fractions in (0, 1) and optim.decay in (0, 1], got {tuple(config.optim.boundaries)} and {config.optim.decay}'),
        (0 <= config.optim.ema_decay < 1, f'optim.ema_decay must be in [0, 1), got {config.optim.ema_decay}'),
        (all(config.model[f] > 0 for f in ('vdvae_width', 'vdvae_middle', 'vdvae_zdim', 'vdvae_blocks', 'vdvae_groups', 'vdvae_min_res', 'vdvae_max_latent_res', 'vdvae_stem')), 'model.vdvae_* sizes must be positive'),
        (config.model.group_depth > 0, f'model.group_depth must be positive, got {config.model.group_depth}'),
        (len(config.discriminator.hidden) > 0 and all(h > 0 for h in config.discriminator.hidden), f'discriminator.hidden must be one or more positive widths, got {tuple(config.discriminator.hidden)}'),
        (config.num_image_examples > 0, f'num_image_examples must be positive, got {config.num_image_examples}'),
        (config.eval_examples >= 0 and config.eval_every >= 0, 'eval_examples and eval_every must be >= 0'),
        (config.batch_size > 0, f'batch_size must be positive, got {config.batch_size}'),
        (0 <= config.data.train_missing < 1, f'data.train_missing must be in [0, 1), got {config.data.train_missing}'),
        (0 <= config.data.train_perturb < 1, f'data.train_perturb must be in [0, 1), got {config.data.train_perturb}'),
        (config.eval_batch_size > 0, f'eval_batch_size must be positive, got {config.eval_batch_size}'),
        (config.optim.learning_rate > 0, f'optim.learning_rate must be positive, got {config.optim.learning_rate}'),
        (config.num_steps > 0 or config.num_epochs > 0, 'set num_steps or num_epochs to a positive value'),
        (config.checkpoint_every > 0, f'checkpoint_every must be positive, got {config.checkpoint_every}'),
        (config.log_every > 0, f'log_every must be positive, got {config.log_every}'),
        (config.steps_per_execution > 0, f'steps_per_execution must be positive, got {config.steps_per_execution}'),
        (config.keep_checkpoints > 0, f'keep_checkpoints must be positive, got {config.keep_checkpoints}'),
        (config.eval.iwae_samples >= 1, f'eval.iwae_samples must be >= 1, got {config.eval.iwae_samples}'),
        (config.eval.iwae_chunk >= 1, f'eval.iwae_chunk must be >= 1, got {config.eval.iwae_chunk}'),
        (config.eval.iwae_examples >= 0, f'eval.iwae_examples must be >= 0, got {config.eval.iwae_examples}'),
        (config.eval.anomaly_samples >= 1, f'eval.anomaly_samples must be >= 1, got {config.eval.anomaly_samples}'),
        (config.eval.probe_train_examples >= 0, f'eval.probe_train_examples must be >= 0, got {config.eval.probe_train_examples}'),
        (config.discriminator.learning_rate > 0, f'discriminator.learning_rate must be positive, got {config.discriminator.learning_rate}'),
        (config.disentanglement.num_train > 0 and config.disentanglement.num_test > 0, 'disentanglement.num_train and num_test must be positive'),
        (config.disentanglement.batch_size > 1, f'disentanglement.batch_size must be > 1, got {config.disentanglement.batch_size}'),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    likelihoods.check(config.model)
    likelihood = likelihoods.make(config.model)
    if config.data.binarize == 'dynamic' and not likelihood.binary:
        raise UserError(f"data.binarize='dynamic' needs a likelihood of binary data; "
                        f"{config.model.likelihood!r} is not")
    check_objective(config)


def check_objective(config) -> None:
    """The chosen objective's own checks, and every objective field it does not read left at
    its default: a β given to an objective that ignores it is an error, not a silent no-op."""
    o = config.objective
    objective = objectives.get(o.name)
    objective.check(config)
    if config.data.get('train_missing', 0) > 0 and not objective.missing_data:
        missing = [n for n in objectives.REGISTRY if objectives.get(n).missing_data]
        raise UserError(f'data.train_missing={config.data.train_missing} leaves pixels '
                        f'missing, which objective.name={o.name!r} cannot train on; use '
                        f'{" or ".join(repr(n) for n in missing)}')
    ignored = [f'objective.{f}={o[f]!r}' for f, default in objectives.declared_fields().items()
               if f not in objective.defaults and o[f] != default]
    if ignored:
        raise UserError(f"objective.name={o.name!r} does not read {', '.join(ignored)}; it reads "
                        f"{', '.join(objective.defaults) or 'no other field'} (leave the others "
                        f"at their defaults)")


DSPRITES_ARGS = dict(quick=False, steps=0)  # the config arguments dsprites_config reads


def dsprites_config(quick: bool = False, steps: int = 0) -> ml_collections.ConfigDict:
    """The disentanglement_lib setup every β-VAE-family experiment shares.

    Procedural dSprites, the Burgess et al. (2018) conv net (4 × 4×4 stride-2 convolutions
    32-32-64-64, dense 256, 10 latents; the decoder mirrors it), Bernoulli likelihood, batch 64,
    Adam 1e-4, 300k steps. `quick`: 600 steps, Adam 5e-4, metrics on a tenth of the protocol's
    sample sizes (minutes on a 2-core CPU). `steps` > 0 overrides the number of steps of either;
    0 keeps it. Experiments declare both as config arguments with `DSPRITES_ARGS`.
    """
    if steps < 0:
        raise UserError(f'config argument steps must be >= 0 (0 = the default), got {steps}')
    c = base_config()
    c.data.name = 'dsprites'
    c.model.encoder = 'conv'
    c.model.conv_channels = (32, 32, 64, 64)
    c.model.kernel = 4
    c.model.dense = 256
    c.model.latents = 10
    c.model.likelihood = 'bernoulli'
    c.xla_cpu_flags = xla_setup.BETA_VAE_CPU_FLAGS  # this conv net's step, 1.23x (see there)
    c.optim.learning_rate = 1e-4
    c.batch_size = 64
    c.num_steps = steps or 300_000
    c.eval_every = 10_000
    c.checkpoint_every = 10_000
    c.log_every = 500
    c.eval_batch_size = 500
    c.eval_examples = 10_000
    if quick:
        c.num_steps = steps or 600
        c.optim.learning_rate = 5e-4
        c.eval_every = c.num_steps
        c.checkpoint_every = c.num_steps // 2
        c.log_every = 100
        c.eval_examples = 1000
        c.disentanglement.num_train = 1000
        c.disentanglement.num_test = 500
        c.disentanglement.num_variance_estimate = 1000
    return c


_BOOLS = {'true': True, '1': True, 'false': False, '0': False}


def parse_arg(arg: str | None, source: str = '', /, **spec) -> ml_collections.FrozenConfigDict:
    """Parses a config argument like 'beta=4,quick' against `spec`, as big_vision's parse_arg.

    Args:
      arg: comma-separated `name=value` items and bare `name`s; '' or None gives the defaults.
      source: the config file (usually its `__file__`), named in error messages.
      **spec: every accepted name and its default, whose type (bool, int, float or str) the
        value must have. A tuple of strings lists the accepted values, the first the default.
        A bare name sets a bool to True; a bool also takes true, false, 1 or 0.

    Returns:
      Every name of `spec`, with its value from `arg` or its default, as attributes.

    Raises:
      UserError: an unknown or repeated name, a bare name that is not a bool, or a value that
        does not convert; an unknown name's message lists every valid one.
    """
    for name, default in spec.items():
        _check_default(name, default)
    values = {}
    for item in filter(None, (item.strip() for item in (arg or '').split(','))):
        name, has_value, text = (part.strip() for part in item.partition('='))
        if name not in spec:
            raise UserError(_unknown_message(name, source, spec))
        if name in values:
            raise UserError(f'config argument {name!r} is given twice in {arg!r}')
        values[name] = _convert(name, text if has_value else None, spec[name])
    return ml_collections.FrozenConfigDict(
        {name: values.get(name, _default_value(default)) for name, default in spec.items()})


def _check_default(name: str, default) -> None:
    """Raises TypeError (a bug in the config file, not bad input) for a default of no known type."""
    choices = (isinstance(default, tuple) and len(default) > 0
               and all(isinstance(d, str) for d in default))
    if not (choices or isinstance(default, (bool, int, float, str))):
        raise TypeError(f'config argument {name!r}: the default {default!r} is not a bool, int, '
                        f'float, str or non-empty tuple of str')


def _default_value(default):
    """A spec entry's default: the first of a tuple of choices, else the entry itself."""
    return default[0] if isinstance(default, tuple) else default


def _show(default) -> str:
    """A spec entry as the valid-arguments list shows it: 4.0, 'pinwheel'|'gaussian_mixture'."""
    return '|'.join(map(repr, default)) if isinstance(default, tuple) else repr(default)


def _unknown_message(name: str, source: str, spec: dict) -> str:
    """'unknown config argument ... (did you mean ...?); valid: ...' for a name not in `spec`."""
    where = f' for {os.path.relpath(source)}' if source else ''
    close = difflib.get_close_matches(name, spec, n=1)
    hint = f' (did you mean {close[0]!r}?)' if close else ''
    valid = ', '.join(f'{n}={_show(d)}' for n, d in spec.items()) or 'none'
    return f'unknown config argument {name!r}{where}{hint}; valid: {valid}'


def _convert(name: str, text: str | None, default):
    """The value of `name=text` (text None for a bare `name`), of the type `default` declares."""
    if isinstance(default, bool):
        if text is None:
            return True
        if text.lower() in _BOOLS:
            return _BOOLS[text.lower()]
        expected = 'a bool (true, false, 1 or 0)'
    elif text is None:
        raise UserError(f'config argument {name!r} needs a value, e.g. {name}={_show(default)}')
    elif isinstance(default, tuple):
        if text in default:
            return text
        expected = f'one of {", ".join(map(repr, default))}'
    else:
        try:
            return type(default)(text)
        except ValueError:  # str() always converts, so the type is int or float
            expected = 'an int' if isinstance(default, int) else 'a float'
    raise UserError(f'config argument {name}={text!r} must be {expected}')
