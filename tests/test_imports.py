"""No import cycle: every module of the package imports on its own, first, in a fresh interpreter."""

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import nextrl
names = sorted(m.name for m in pkgutil.walk_packages(nextrl.__path__, "nextrl."))
for name in names:
    for loaded in [key for key in sys.modules if key.startswith("nextrl")]:
        del sys.modules[loaded]
    importlib.import_module(name)  # a cycle through `name` fails here: `name` is the first nextrl module imported
print(len(names))
"""


def test_every_module_imports_first_without_a_cycle():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) >= 30


def test_summary_and_figures_load_no_model():
    """`snakemake figures` redraws from Parquet alone: its stages import neither torch nor transformers nor peft."""
    check = (
        "import sys, nextrl.cli, nextrl.stages.summary, nextrl.stages.figure, nextrl.analysis.cross_experiment\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"


def test_weight_algebra_stages_load_no_model_library_and_no_stage_loads_mlflow():
    """Lean jobs: trajectory, fit, extrapolate and heldout work on tensors and tables (no peft, no transformers); no
    stage job imports MLflow (its record is queued, nextrl.jobs.tracking)."""
    check = (
        "import sys, nextrl.cli, nextrl.jobs.tracking\n"
        "import nextrl.stages.trajectory, nextrl.stages.fit, nextrl.stages.extrapolate, nextrl.stages.heldout\n"
        "print(sorted(m for m in ('transformers', 'peft', 'mlflow') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"
