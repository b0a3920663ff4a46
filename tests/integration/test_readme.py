"""The README's examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


class TestReadme:
    def test_runtime_example_runs(self, database_url: str, tmp_path: Path) -> None:
        """The 'engine without HTTP' example runs and prints what its comments promise."""
        blocks = python_blocks()
        assert blocks, "README.md has no python example"
        script = tmp_path / "example.py"
        script.write_text(blocks[0])
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONGRAPH_")}
        env |= {"DATABASE_URL": database_url, "SESSIONGRAPH_SWEEP_INTERVAL_SECONDS": "0"}
        out = subprocess.run(
            [sys.executable, str(script)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert "Your name is Alice." in lines
        assert "The result is 20." in lines
        assert "My instructions are: You are a polite support agent." in lines
        assert "My instructions are: You are terse." in lines
        assert any(line.startswith("done ") for line in lines)
