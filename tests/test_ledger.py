"""The reproduction ledger (vae_jax/ledger.py, experiments/paper/): each row's config is its
paper's protocol (network size from the paper's layer widths, batch, optimizer, schedule, data
split, the k of the test bound) and trains end to end; the command runs a row, skips it when
finished, and tabulates a finished ledger without training."""

import json
import math

import jax
import jax.numpy as jnp
import pytest

from vae_jax import ledger, model_fns, train


def dense(*widths):
    """Parameters of a chain of dense layers (weights and biases) with these widths."""
    return sum(a * b + b for a, b in zip(widths, widths[1:]))


def gated(*widths):
    """A chain of gated dense layers: two dense layers per step."""
    return 2 * dense(*widths)


BURDA_1 = dense(784, 200, 200, 2 * 50) + dense(50, 200, 200, 784)
BURDA_2 = (dense(784, 200, 200, 2 * 100) + dense(100, 100, 100, 2 * 50) +
           dense(50, 100, 100, 2 * 100) + dense(100, 200, 200, 784))
# The VampPrior's MNIST network: gated 784-300-300, separate mean and log-variance heads (40),
# gated 40-300-300 then a dense layer to 784, and 500 pseudo-inputs of 784 pixels.
VAMP = gated(784, 300, 300) + 2 * dense(300, 40) + gated(40, 300, 300) + dense(300, 784) + 500 * 784
# Their two-level model: q(z2|x) gated 784-300-300; q(z1|x,z2) and p(x|z1,z2) a gated layer per
# input (600 concatenated) then one more; p(z1|z2) gated 40-300-300; mean and log-variance heads.
HEADS = 2 * dense(300, 40)
VAMP_HVAE = (gated(784, 300, 300) + HEADS + gated(784, 300) + gated(40, 300) + gated(600, 300) +
             HEADS + gated(40, 300, 300) + HEADS + 2 * gated(40, 300) + gated(600, 300) +
             dense(300, 784) + 500 * 784)
BURDA_STEPS = 3280 * 59_600 // 20
DYNAMIC = ('mnist', 'dynamic', 'train[:59600]')
STATIC = ('binarized_mnist', 'none', 'train')
# row -> params, batch, (lr, eps, schedule), data, steps, (objective, k, M or β), test k, init
BURDA = dict(batch=20, optim=(1e-3, 1e-4, 'burda'), data=DYNAMIC, steps=BURDA_STEPS, k=5000,
             init='glorot')
EXPECTED = {
    'flax_vae': dict(params=dense(784, 500, 40) + dense(20, 500, 784), batch=128,
                     optim=(1e-3, 1e-8, 'constant'), data=STATIC, steps=3900,
                     objective=('elbo',), k=1000, init='lecun'),
    'pythae_vae': dict(params=dense(784, 400, 80) + dense(40, 400, 784), batch=100,
                       optim=(1e-4, 1e-8, 'piecewise'), data=STATIC, steps=250_000,
                       objective=('elbo',), k=200, init='torch'),
    'vampprior_k500': dict(params=VAMP, batch=100, optim=(5e-4, 1e-8, 'constant'), data=STATIC,
                           steps=1_000_000, objective=('elbo',), k=5000, init='he'),
    'vampprior_hvae': dict(params=VAMP_HVAE, batch=100, optim=(5e-4, 1e-8, 'constant'),
                           data=STATIC, steps=1_000_000, objective=('elbo',), k=5000, init='he'),
    'pythae_iwae_k50': dict(BURDA, params=BURDA_1, data=STATIC, steps=3280 * 50_000 // 20,
                            objective=('iwae', 50)),
    'burda_l1_k1': dict(BURDA, params=BURDA_1, objective=('elbo',)),
    'burda_l1_k5': dict(BURDA, params=BURDA_1, objective=('iwae', 5)),
    'burda_l1_k50': dict(BURDA, params=BURDA_1, objective=('iwae', 50)),
    'burda_l2_k1': dict(BURDA, params=BURDA_2, objective=('elbo',)),
    'burda_l2_k50': dict(BURDA, params=BURDA_2, objective=('iwae', 50)),
    'rainforth_miwae_8x8': dict(BURDA, params=BURDA_1, objective=('miwae', 8, 8)),
    'rainforth_piwae_8x8': dict(BURDA, params=BURDA_1, objective=('piwae', 8, 8)),
    'rainforth_ciwae_005': dict(BURDA, params=BURDA_1, objective=('ciwae', 64, 0.05)),
    # Encoder 4096-1200-1200-(10, 10), decoder 10-1200-1200-1200-4096; 50 epochs of 737,280.
    'tcvae_dsprites': dict(params=dense(4096, 1200, 1200, 20) + dense(10, 1200, 1200, 1200, 4096),
                           batch=2048, optim=(1e-3, 1e-8, 'constant'),
                           data=('dsprites', 'none', 'train'), steps=18_000,
                           objective=('beta_tcvae', 6.0), k=5000, init='torch'),
    # Not the published network (see the row's docstring): its own size, checked elsewhere.
    'vdvae_mnist': dict(params=None, batch=100, optim=(1e-3, 1e-8, 'warmup_cosine'),
                        data=STATIC, steps=50_000, objective=('elbo',), k=1000, init='lecun'),
}
ROWS = ledger.load_rows()


def test_every_row_is_checked():
    assert sorted(ROWS) == sorted(EXPECTED)


def _objective(c):
    o = c.objective
    return {'elbo': ('elbo',), 'iwae': ('iwae', o.num_samples),
            'miwae': ('miwae', o.num_bounds, o.num_samples),
            'piwae': ('piwae', o.num_bounds, o.num_samples),
            'ciwae': ('ciwae', o.num_samples, o.elbo_weight),
            'beta_tcvae': ('beta_tcvae', o.beta)}[o.name]


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_row_config_is_the_papers_protocol(name):
    row, want = ROWS[name], EXPECTED[name]
    c = ledger.row_config(row)
    shape = (64, 64, 1) if c.data.name == 'dsprites' else (28, 28, 1)
    module = model_fns.build(c.model, shape, 0).module
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, *shape)))
    params = sum(math.prod(a.shape) for a in jax.tree.leaves(shapes['params']))
    if want['params'] is not None:
        assert params == want['params']
    assert c.batch_size == want['batch']
    assert (c.optim.name, c.optim.learning_rate, c.optim.eps, c.optim.schedule) == (
        'adam', *want['optim'])
    assert (c.data.name, c.data.binarize, c.data.train_split, c.data.eval_split) == (
        *want['data'], 'test')
    train_examples = {'mnist': 59_600, 'binarized_mnist': 50_000, 'dsprites': 737_280}[c.data.name]
    steps = train.num_train_steps(c, train_examples)
    assert steps == want['steps'] == row.published.paper_steps  # the row says what it trains
    assert _objective(c) == want['objective']
    if name == 'tcvae_dsprites':  # ReLU encoder, tanh decoder
        assert (c.model.activation, c.model.decoder_activation) == ('relu', 'tanh')
    assert (c.eval.iwae_samples, c.eval.iwae_examples, c.model.init) == (
        want['k'], 0, want['init'])
    assert ledger.row_config(row, 'steps=1000').num_steps == 1000
    if name == 'pythae_vae':  # MultiStepLR at epochs 200 and 350 of 500, γ = 10^(-1/5)
        assert tuple(c.optim.boundaries) == (0.4, 0.7) and c.optim.decay == 10 ** -0.2
    if name.startswith('vampprior'):  # warm-up over 100 of 2000 epochs; 500 pseudo-inputs
        assert c.objective.kl_warmup_steps == 50_000 and c.model.prior_components == 500
    if name == 'vdvae_mnist':  # the bound on a prefix of the test split, when asked for
        assert ledger.row_config(row, 'test_examples=1000').eval.iwae_examples == 1000


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_row_trains_end_to_end(name, tfds_dir, tmp_path):
    c = ledger.row_config(ROWS[name], 'steps=3')
    c.data.data_dir = tfds_dir
    c.eval_examples, c.eval_batch_size, c.num_image_examples = 40, 20, 2
    c.batch_size = min(c.batch_size, 20)  # the protocol's batch is checked above
    if name == 'vdvae_mnist':  # its size is checked above; one group at 4×4 and 8×8 compiles
        c.model.vdvae_groups, c.model.vdvae_max_latent_res = 1, 8  # in half the time
    state = train.train_and_evaluate(c, tmp_path / name)
    assert int(state.step) == 3
    evals = [json.loads(line) for line in (tmp_path / name / 'metrics.jsonl').open()
             if '"eval"' in line]
    assert evals and all(math.isfinite(e['neg_elbo']) for e in evals)


TINY_ROW = '''
from experiments.paper import pythae_vae
from vae_jax.configs import parse_arg
from vae_jax.ledger import ROW_ARGS, Published, seed_sweep

PUBLISHED = Published(paper='a test', setting='pythae_vae shrunk', value=500.0, metric='nll',
                      paper_steps=30, others=(('someone', 499.0),))


def get_config(arg=None):
    args = parse_arg(arg, __file__, **ROW_ARGS)
    c = pythae_vae.get_config('steps=30')
    c.model.hidden, c.model.latents = (16,), 4
    c.eval_every = c.checkpoint_every = 10
    c.eval_examples, c.num_image_examples = 100, 2
    c.eval.iwae_samples, c.eval.iwae_examples, c.eval.anomaly_samples = 3, 50, 2
    c.eval.probe_train_examples = 100
    return c


def get_sweep(arg=None):
    return seed_sweep(parse_arg(arg, __file__, **ROW_ARGS).seeds)
'''


def test_ledger_command_runs_skips_and_tabulates(tfds_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('TFDS_DATA_DIR', tfds_dir)
    rows_dir, root = tmp_path / 'rows', tmp_path / 'root'
    rows_dir.mkdir()
    (rows_dir / 'tiny.py').write_text(TINY_ROW)
    common = ['--rows_dir', str(rows_dir), '--root', str(root)]
    assert ledger.main(['run', *common, '--arg=seeds=2']) == 0
    [entry] = json.loads((root / 'ledger.json').read_text())
    nlls = [json.loads((root / 'tiny' / f'seed={s}' / 'results' / 'eval_0000030.json')
                       .read_text())['likelihood']['nll'] for s in (0, 1)]
    assert entry['seeds'] == 2 and entry['ours'] == nlls and nlls[0] != nlls[1]
    assert entry['ours_mean'] == pytest.approx(sum(nlls) / 2)
    assert entry['ours_std'] == pytest.approx(abs(nlls[0] - nlls[1]) / 2 ** 0.5)
    assert entry['gap'] == pytest.approx(entry['ours_mean'] - 500.0)
    assert (entry['k'], entry['steps'], entry['paper_steps']) == (3, 30, 30)
    assert entry['wall_s_per_seed'] > 0 and entry['hardware'][0].endswith(')')
    assert (root / 'tiny' / 'curve.png').stat().st_size > 0
    table = (root / 'ledger.md').read_text()
    assert '| tiny | a test: pythae_vae shrunk | 500.0; someone 499.0 | ' in table
    assert entry['verdict'] == ledger.verdict(entry['gap'])
    log = (root / 'tiny.log').read_text()
    assert log.count('--mode=eval') == 2
    # A rerun trains and evaluates nothing: the sweep skips finished seeds, results exist.
    mtimes = sorted(p.stat().st_mtime for p in root.rglob('checkpoints/*/*') if p.is_file())
    capsys.readouterr()
    assert ledger.main(['run', *common, '--arg=seeds=2']) == 0
    assert (root / 'tiny.log').read_text().count('--mode=eval') == 2
    assert sorted(p.stat().st_mtime for p in root.rglob('checkpoints/*/*') if p.is_file()) == mtimes
    # `table` prints the finished ledger without running anything.
    capsys.readouterr()
    log = (root / 'tiny.log').read_text()
    assert ledger.main(['table', *common]) == 0
    assert capsys.readouterr().out.strip() == table.strip()
    assert (root / 'tiny.log').read_text() == log
    assert ledger.main(['run', *common, '--rows=nope']) == 2


def test_table_says_when_the_bound_covers_part_of_the_test_split():
    entry = dict(row='r', paper='P', setting='s', metric='nll', published=80.0, others=[],
                 note='', ours_mean=81.0, ours_std=0.0, seeds=1, gap=1.0, steps=10,
                 paper_steps=20, k=1000, test_examples=1000, wall_s_per_seed=5.0,
                 hardware=['cpu'])
    assert '81.00 (1 seed), −log p(x), k=1000 on the first 1,000 test images | +1.00 (short)' \
        in ledger.table([entry])
    assert 'test images' not in ledger.table([dict(entry, test_examples=0)])
