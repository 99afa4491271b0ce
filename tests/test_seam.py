"""The task seam holds: generic modules import no task, and inference needs neither the trainer nor wandb."""

import ast
import subprocess
import sys

from helpers import ROOT

PACKAGE = ROOT / "src" / "foldnlp"


def imported_modules(path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def test_generic_modules_import_no_task():
    generic = [p for p in PACKAGE.rglob("*.py") if "tasks" not in p.relative_to(PACKAGE).parts]
    assert len(generic) > 20
    task_packages = {p.name for p in (PACKAGE / "tasks").iterdir() if (p / "task.py").is_file()}
    assert "qa" in task_packages
    offenders = {str(p.relative_to(PACKAGE)): sorted(m for m in imported_modules(p)
                                                     if m.split(".")[:2] == ["foldnlp", "tasks"]
                                                     and len(m.split(".")) > 2 and m.split(".")[2] in task_packages)
                 for p in generic}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_inference_and_blending_run_without_accelerate_or_wandb():
    """The Kaggle kernel installs only the inference packages: infer and ensemble, the QA task included, must
    import (and so run) with accelerate and wandb absent."""
    code = ("import sys\n"
            "sys.modules['accelerate'] = sys.modules['wandb'] = None  # import of either raises ImportError\n"
            "from foldnlp.config import load_config\n"
            "from foldnlp.steps import ensemble, infer\n"
            "from foldnlp.tasks import get_task\n"
            "task = get_task(load_config(None))\n"
            "from foldnlp import processes\n"
            "assert processes.of_launch() == processes.SINGLE and processes.device().type in ('cpu', 'cuda')\n"
            "print(type(task).__name__, sorted(m for m in sys.modules if m.startswith('foldnlp.')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("QATask") and "foldnlp.training" not in result.stdout
