"""Records, config and judges import no heavy library (DESIGN.md: dependencies point one way)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "vllm", "prefect", "mlflow", "transformers", "datasets", "peft"]


def test_light_modules_import_no_heavy_library():
    code = ("import sys, json; import judges, tasks.records, tasks.config, tasks.sources, tasks.strategies, "
            "tasks.cache, tasks.models, tasks.backends; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_judges_do_not_import_flows_or_stage_modules():
    for path in (ROOT / "judges").glob("*.py"):
        text = path.read_text()
        assert "import prefect" not in text and "import mlflow" not in text and "from flows" not in text, path
