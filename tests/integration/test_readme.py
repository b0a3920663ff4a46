"""The README's examples run as written."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from api.app import create_app
from runtime import Settings
from tests.support.server import running_server

ROOT = Path(__file__).resolve().parents[2]


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def run_example(code: str, database_url: str, tmp_path: Path) -> list[str]:
    script = tmp_path / "example.py"
    script.write_text(code)
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
    return out.stdout.splitlines()


class TestReadme:
    def test_guardrails_example_runs(self, fresh_database: str, tmp_path: Path) -> None:
        """The guardrails example pauses for approval, runs the edited call, refunds once."""
        (code,) = [b for b in python_blocks() if b.startswith("# guardrails example")]
        lines = run_example(code, fresh_database, tmp_path)
        assert lines[0].startswith("awaiting_approval [{") and "'order_id': 7" in lines[0]
        assert lines[1].startswith("completed ") and lines[1].endswith("[8]")
        assert lines[2] == "[8]"

    def test_runtime_example_runs(self, database_url: str, tmp_path: Path) -> None:
        """The 'engine without HTTP' example runs and prints what its comments promise."""
        blocks = python_blocks()
        assert blocks, "README.md has no python example"
        lines = run_example(blocks[0], database_url, tmp_path)
        assert "Your name is Alice." in lines
        assert "The result is 20." in lines
        assert "My instructions are: You are a polite support agent." in lines
        assert "My instructions are: You are terse." in lines
        assert any(line.startswith("done ") for line in lines)


def http_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## HTTP API") : text.index("## Command line")]


def curl_script(base_url: str) -> str:
    blocks = [
        b for b in re.findall(r"```bash\n(.*?)```", http_section(), flags=re.DOTALL) if "curl" in b
    ]
    # Every curl fails the script on an HTTP error status, so "works as written" means 2xx.
    prelude = 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; echo; }\n'
    return prelude + "\n".join(blocks).replace("localhost:8000", base_url.removeprefix("http://"))


class TestReadmeQuickStart:
    def test_readyz_example_shows_the_schema_version(self) -> None:
        """The quick start's /readyz output names this build's schema version."""
        from runtime.db import SCHEMA_VERSION

        text = (ROOT / "README.md").read_text()
        assert f'{{"status":"ready","schema_version":{SCHEMA_VERSION}}}' in text


class TestReadmeCli:
    def test_agents_file_applies(self, fresh_database: str, tmp_path: Path) -> None:
        """The README's `agents apply` file is valid and creates its agent."""
        text = (ROOT / "README.md").read_text()
        (block,) = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
        path = tmp_path / "agents.yaml"
        path.write_text(textwrap.dedent(block))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONGRAPH_")}
        env |= {"DATABASE_URL": fresh_database, "SESSIONGRAPH_SWEEP_INTERVAL_SECONDS": "0"}
        out = subprocess.run(
            [sys.executable, "-m", "api.cli", "agents", "apply", str(path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "created support (version 1)"


class TestReadmeHttp:
    async def test_curl_examples_run_in_order(
        self, fresh_database: str, settings: Settings
    ) -> None:
        """Every curl example of the HTTP API section succeeds against a fresh server."""
        s = settings.model_copy(update={"database_url": fresh_database})
        async with running_server(create_app(s)) as url:
            proc = await asyncio.create_subprocess_exec(
                "bash",
                "-c",
                curl_script(url),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
        out = stdout.decode()
        assert proc.returncode == 0, out[-2000:] + stderr.decode()
        assert out.count('"reply"') >= 3
        assert "event: token" in out and "event: done" in out
        assert "sessiongraph_turns_total" in out

    def test_every_operation_has_a_curl_example(self) -> None:
        """Each HTTP operation in the OpenAPI schema has a curl example with its method."""
        text = "\n".join(re.findall(r"```bash\n(.*?)```", http_section(), flags=re.DOTALL))
        examples = set()
        for command in re.split(r"\n(?=curl )", text.replace("\\\n", " ")):
            method = re.search(r" -X (\w+)", command)
            verb = method.group(1) if method else ("POST" if " -d " in command else "GET")
            target = re.search(r"localhost:8000(/[^ ?'\n]*)", command)
            if target:
                examples.add((verb, target.group(1)))
        missing = []
        for path, operations in create_app(Settings()).openapi()["paths"].items():
            pattern = re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
            for verb, operation in operations.items():
                if any(t.startswith("langgraph") for t in operation.get("tags", [])):
                    continue  # LangGraph's API, documented by LangGraph (the SDK's examples)
                if not any(v == verb.upper() and pattern.match(p) for v, p in examples):
                    missing.append(f"{verb.upper()} {path}")
        assert not missing, f"operations without a curl example: {missing}"
