"""The README's "Extending vae_jax" examples work as written.

The objective example is in the repository: its README blocks must equal the files. The prior
and likelihood examples live in a researcher's own package: they are written out from the
README, registered with the README's registry line, checked against scipy, and trained.
"""

import ast
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vae_jax import base_config, configs, likelihoods, objectives, priors, train


def _blocks(readme_text):
    """{first-line '# file: PATH' -> the block's text without that line} and the registry
    lines ("    'name': ...,") in order."""
    files, lines = {}, []
    for block in re.findall(r'```python\n(.*?)```', readme_text, re.S):
        first, _, rest = block.partition('\n')
        if first.startswith('# file: '):
            files[first[len('# file: '):]] = rest
        elif re.fullmatch(r"    '\w+': '[\w.:]+',\n", block):
            lines.append(block)
    return files, lines


@pytest.fixture(scope='module')
def readme(repo):
    return _blocks((repo / 'README.md').read_text())


def test_objective_example_is_the_repository_code(readme, repo):
    files, lines = readme
    for path in ('vae_jax/objectives/cyclical.py', 'tests/test_objective_cyclical.py'):
        assert files[path] == (repo / path).read_text(), path
    assert "    'cyclical': 'cyclical',\n" in lines and 'cyclical' in objectives.REGISTRY
    init = (repo / 'vae_jax/objectives/__init__.py').read_text()
    assert "    'cyclical': 'cyclical',\n" in init


@pytest.fixture
def my_vae(readme, tmp_path, monkeypatch):
    """The README's package `my_vae`, importable, with its registry lines applied."""
    files, lines = readme
    (tmp_path / 'my_vae').mkdir()
    (tmp_path / 'my_vae' / '__init__.py').write_text('')
    for path, text in files.items():
        if path.startswith('my_vae/'):
            (tmp_path / path).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    for line in lines:
        (name, entry), = ast.literal_eval('{' + line + '}').items()
        if entry.startswith('my_vae.priors:'):
            monkeypatch.setitem(priors.REGISTRY, name, entry)
        elif entry.startswith('my_vae.likelihoods:'):
            monkeypatch.setitem(likelihoods.REGISTRY, name, entry)
    yield
    for module in [m for m in sys.modules if m == 'my_vae' or m.startswith('my_vae.')]:
        del sys.modules[module]


def test_prior_example(my_vae):
    c = base_config()
    c.model.prior, c.model.latents = 'learned_gaussian', 2
    prior = priors.make(c.model)
    mu, logvar = jnp.array([0.5, -1.0]), jnp.array([0.3, -0.2])
    params = {'mu': mu, 'logvar': logvar}
    z = jnp.array([[0.1, 0.2], [1.0, -2.0]])
    np.testing.assert_allclose(
        prior.apply({'params': params}, z, method=prior.log_prob),
        stats.norm.logpdf(z, mu, np.exp(0.5 * logvar)).sum(-1), rtol=1e-5)
    mean, lv = jnp.array([[0.0, 0.0]]), jnp.array([[0.0, 0.5]])
    kl = prior.apply({'params': params}, mean, lv, method=prior.kl_per_dim)
    eps = jax.random.normal(jax.random.key(0), (200000, 2))
    zq = mean + jnp.exp(0.5 * lv) * eps
    mc = (stats.norm.logpdf(zq, mean, np.exp(0.5 * lv))
          - stats.norm.logpdf(zq, mu, np.exp(0.5 * logvar))).mean(0)
    np.testing.assert_allclose(kl[0], mc, atol=0.01)


def test_likelihood_example(my_vae):
    c = base_config()
    c.model.likelihood = 'laplace'
    lik = likelihoods.make(c.model)
    x = jnp.array([0.2, -1.0, 3.0])
    p = jnp.array([[0.0, 0.1], [0.5, -0.3], [2.0, 0.0]])
    np.testing.assert_allclose(lik.log_prob(x, p),
                               stats.laplace.logpdf(x, p[:, 0], np.exp(p[:, 1])).sum(), rtol=1e-5)


@pytest.mark.parametrize('field, value', [('model.prior', 'learned_gaussian'),
                                          ('model.likelihood', 'laplace')])
def test_examples_train(my_vae, tiny_toy2d_config, tmp_path, field, value):
    c = tiny_toy2d_config()
    c.unlock()
    c.update_from_flattened_dict({field: value})
    configs.validate(c)
    state = train.train_and_evaluate(c, tmp_path)
    assert int(state.step) == c.num_steps
    if field == 'model.prior':  # the prior's parameters are trained with the model
        assert 'prior' in state.params
        assert not np.allclose(state.params['prior']['mu'], 0.0)
