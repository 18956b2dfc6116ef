"""notebooks/quickstart.ipynb runs end to end on a tiny trained run (its code cells, in order)."""

import json


def test_quickstart_notebook_executes(tfds_dir, tiny_mnist_config, repo, tmp_path, monkeypatch):
    import vae_jax
    workdir = tmp_path / 'run'
    vae_jax.train_and_evaluate(tiny_mnist_config(tfds_dir, **{'num_steps': 10, 'eval_every': 10}),
                               workdir)
    monkeypatch.setenv('VAE_JAX_NOTEBOOK_RUN', str(workdir))
    monkeypatch.setenv('TFDS_DATA_DIR', tfds_dir)
    notebook = json.loads((repo / 'notebooks' / 'quickstart.ipynb').read_text())
    namespace = {}
    for cell in notebook['cells']:
        if cell['cell_type'] == 'code':
            exec(compile(''.join(cell['source']), 'quickstart.ipynb', 'exec'), namespace)
    assert namespace['run'].step == 10
    assert set(namespace['bounds']) == {1, 10, 100}
