"""benchmarks/accelerator_check.py on CPU, as the GPU machine would run it: a subprocess with
--quick, its markdown table and its JSON report; the ledger row skipped (by flag, or for want of
data, with the reason and no traceback); JAX columns alone when PyTorch cannot be imported."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = 'benchmarks/accelerator_check.py'
KEYS = {'header', 'throughput', 'skipped', 'row', 'notes', 'args', 'elapsed_s'}


def run_check(repo, xla_flags, *args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != 'OUT'}
    env['XLA_FLAGS'] = xla_flags(None)  # 1 CPU device, unoptimised code (quicker to compile)
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, SCRIPT, '--quick', *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'Traceback' not in proc.stdout + proc.stderr
    return proc.stdout


def table_rates(stdout):
    """{(model, framework): steps/s} from the markdown table's throughput lines."""
    rates = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 10 and cells[0].endswith('.py)'):
            rates[cells[0].split()[0], cells[1]] = float(cells[4])
    return rates


def test_mlp_both_frameworks_json_in_out(repo, tmp_path, xla_flags):
    pytest.importorskip('torch')
    stdout = run_check(repo, xla_flags, '--models=mlp', '--skip_row',
                       env_extra={'OUT': str(tmp_path)})
    rates = table_rates(stdout)
    assert set(rates) == {('mlp', 'jax'), ('mlp', 'torch')}
    assert all(r > 0 for r in rates.values())
    report = json.loads((tmp_path / 'accelerator_check.json').read_text())  # $OUT's default
    assert set(report) == KEYS
    assert report['header']['backend'] == 'cpu'
    assert report['header']['torch_device'].startswith('cpu')
    assert report['row'] is None and report['skipped'] == []
    jax_row, torch_row = report['throughput']
    assert (jax_row['framework'], torch_row['framework']) == ('jax', 'torch')
    assert jax_row['batch'] == 128 and jax_row['rounds'] == 2
    assert jax_row['images_per_s'] == pytest.approx(128 * jax_row['steps_per_s'])
    assert jax_row['jax_over_torch'] == pytest.approx(
        jax_row['steps_per_s'] / torch_row['steps_per_s'])
    assert jax_row['first_step_s'] > 0


def test_without_torch_or_row_data(repo, tmp_path, xla_flags):
    """JAX columns alone, with a note; the row skipped with its reason, not a traceback.
    (A --models=conv case would add ~30 s on a 2-core CPU: the file stays under a minute.)"""
    hidden = tmp_path / 'hide_torch'
    hidden.mkdir()
    (hidden / 'torch.py').write_text("raise ImportError('torch hidden by the test')\n")
    out = tmp_path / 'report.json'
    stdout = run_check(repo, xla_flags, '--models=mlp', f'--row_data_dir={tmp_path / "no_tfds"}',
                       f'--out={out}', env_extra={'PYTHONPATH': str(hidden)})
    rates = table_rates(stdout)
    assert list(rates) == [('mlp', 'jax')] and rates['mlp', 'jax'] > 0
    report = json.loads(out.read_text())
    assert set(report) == KEYS
    assert report['header']['torch'] is None
    assert any('PyTorch is not installed' in n for n in report['notes'])
    assert report['row']['status'] == 'skipped' and 'binarized_mnist' in report['row']['reason']
    assert '| row flax_vae |' in stdout and 'skipped: no TFDS binarized_mnist' in stdout
