"""The ``sessiongraph`` command run as a real process: ``keys``, ``agents apply`` and ``chat``.

Each test runs ``python -m api.cli`` against the module's database and checks its output,
its exit status, and what it left in the database.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import Runtime, Settings
from runtime.agents import AgentTemplate
from runtime.errors import NotFound

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

TWO_AGENTS = """\
agents:
  - id: cli-math
    name: Math helper
    system_prompt: You do arithmetic.
    model: offline:deterministic
    tools: [calculator]
  - id: cli-notes
    name: Note taker
    description: Keeps notes.
    model: {provider: offline, name: deterministic}
    tools: [save_note, read_notes]
    budgets: {max_steps: 5}
    session_ttl_seconds: 3600
"""


def run_cli(
    database_url: str, *args: str, stdin: str = "", check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``sessiongraph ARGS`` on the database; with ``check``, expect exit status 0."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SESSIONGRAPH_") and k not in {"DATABASE_URL", "OPENAI_API_KEY"}
    }
    env.update(DATABASE_URL=database_url, SESSIONGRAPH_SWEEP_INTERVAL_SECONDS="0")
    proc = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def settings_for(database_url: str) -> Settings:
    return Settings(database_url=database_url, sweep_interval_seconds=0)


async def get_agent(database_url: str, agent_id: str) -> AgentTemplate:
    async with Runtime.open(settings_for(database_url), sweeper=False) as rt:
        return await rt.templates.get(agent_id)


async def agent_exists(database_url: str, agent_id: str) -> bool:
    try:
        await get_agent(database_url, agent_id)
    except NotFound:
        return False
    return True


def create_key(database_url: str, *args: str) -> tuple[str, str]:
    """Create a key through the CLI; return its id and secret."""
    out = run_cli(database_url, "keys", "create", *args).stdout
    key_id = re.search(r"^key_id:\s+(\S+)$", out, re.M)
    secret = re.search(r"^secret:\s+(\S+)$", out, re.M)
    assert key_id and secret, out
    return key_id.group(1), secret.group(1)


def listed(out: str, key_id: str) -> list[str] | None:
    """The cells of ``key_id``'s row in ``keys list`` output, or None if absent."""
    for line in out.splitlines()[1:]:
        cells = line.split()
        if cells and cells[0] == key_id:
            return cells
    return None


class TestKeys:
    def test_create_prints_the_secret_once_with_a_warning(self, database_url: str) -> None:
        """`keys create` prints the id, owner, roles and an `sg_` secret, said to be shown once."""
        out = run_cli(
            database_url, "keys", "create", "--owner", "alice", "--role", "admin", "--name", "ci"
        ).stdout
        assert re.search(r"^owner:\s+alice$", out, re.M)
        assert re.search(r"^roles:\s+admin$", out, re.M)
        assert re.search(r"^secret:\s+sg_\S+$", out, re.M)
        assert "will not be shown again" in out

    def test_created_key_is_listed(self, database_url: str) -> None:
        """`keys list` shows a new key with its owner, roles and name, not yet revoked."""
        key_id, _ = create_key(database_url, "--owner", "bob", "--role", "reader", "--name", "ro")
        out = run_cli(database_url, "keys", "list").stdout
        assert out.split()[:6] == [
            "key_id",
            "owner",
            "roles",
            "name",
            "created_at",
            "revoked_at",
        ]
        row = listed(out, key_id)
        assert row is not None
        assert row[:4] == [key_id, "bob", "reader", "ro"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[4])
        assert row[5] == "-"

    def test_revoked_key_is_listed_as_revoked(self, database_url: str) -> None:
        """A revoked key leaves `keys list` and shows in `keys list --all` with a revoked_at."""
        key_id, _ = create_key(database_url, "--owner", "carol")
        out = run_cli(database_url, "keys", "revoke", key_id).stdout
        assert out.strip() == f"revoked {key_id} (owner carol)"
        assert listed(run_cli(database_url, "keys", "list").stdout, key_id) is None
        row = listed(run_cli(database_url, "keys", "list", "--all").stdout, key_id)
        assert row is not None and row[-1] != "-"

    def test_revoking_an_unknown_key_fails(self, database_url: str) -> None:
        """Revoking a key id that does not exist prints `error:` on stderr and exits 1."""
        proc = run_cli(database_url, "keys", "revoke", "nosuchkey", check=False)
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines()[-1].startswith("error: key 'nosuchkey'")
        assert "Traceback" not in proc.stderr

    def test_publishable_key_create_list_revoke(self, database_url: str) -> None:
        """`keys create-publishable` prints a `pk_` key bound to an agent and origins; it is
        listed, then revoked."""
        out = run_cli(
            database_url,
            "keys",
            "create-publishable",
            "--owner",
            "shop",
            "--agent",
            "default",
            "--origin",
            "https://Shop.Example/",
            "--origin",
            "http://localhost:8080",
        ).stdout
        assert re.search(r"^key:\s+pk_\S+$", out, re.M)
        assert re.search(r"^origins:\s+http://localhost:8080,https://shop.example$", out, re.M)
        key_id = re.search(r"^key_id:\s+(\S+)$", out, re.M).group(1)  # type: ignore[union-attr]
        row = listed(run_cli(database_url, "keys", "list-publishable").stdout, key_id)
        assert row is not None and row[1:3] == ["shop", "default"]
        out = run_cli(database_url, "keys", "revoke-publishable", key_id).stdout
        assert out.strip() == f"revoked {key_id} (owner shop, agent default)"
        assert listed(run_cli(database_url, "keys", "list-publishable").stdout, key_id) is None

    def test_invalid_owner_fails_without_traceback(self, database_url: str) -> None:
        """An owner the runtime rejects is an `error:` line and exit status 1."""
        proc = run_cli(database_url, "keys", "create", "--owner", "no spaces", check=False)
        assert proc.returncode == 1
        assert "error: invalid owner" in proc.stderr
        assert "Traceback" not in proc.stderr

    async def test_secret_authenticates_until_revoked(self, database_url: str) -> None:
        """The printed secret authenticates as its owner and roles, and not after revoke."""
        key_id, secret = create_key(
            database_url, "--owner", "dave", "--role", "admin", "--role", "ops"
        )
        async with Runtime.open(settings_for(database_url), sweeper=False) as rt:
            principal = await rt.keys.authenticate(secret)
        assert principal is not None
        assert principal.owner == "dave"
        assert principal.roles == {"admin", "ops"}
        run_cli(database_url, "keys", "revoke", key_id)
        async with Runtime.open(settings_for(database_url), sweeper=False) as rt:
            assert await rt.keys.authenticate(secret) is None


class TestAgentsApply:
    async def test_apply_creates_then_leaves_unchanged_then_updates(
        self, database_url: str, tmp_path: Path
    ) -> None:
        """Applying creates at version 1, re-applying changes nothing, an edit bumps to 2."""
        path = tmp_path / "agents.yaml"
        path.write_text(TWO_AGENTS)

        out = run_cli(database_url, "agents", "apply", str(path)).stdout
        assert out.splitlines() == ["created cli-math (version 1)", "created cli-notes (version 1)"]
        math = await get_agent(database_url, "cli-math")
        assert math.owner == "local"
        assert math.spec.tools == ["calculator"]
        assert math.spec.model.provider == "offline"
        notes = await get_agent(database_url, "cli-notes")
        assert notes.spec.budgets.max_steps == 5
        assert notes.spec.session_ttl_seconds == 3600

        out = run_cli(database_url, "agents", "apply", str(path)).stdout
        assert out.splitlines() == [
            "unchanged cli-math (version 1)",
            "unchanged cli-notes (version 1)",
        ]
        assert (await get_agent(database_url, "cli-math")).version == 1

        path.write_text(TWO_AGENTS.replace("You do arithmetic.", "You only do sums."))
        out = run_cli(database_url, "agents", "apply", str(path)).stdout
        assert out.splitlines() == [
            "updated cli-math (version 2)",
            "unchanged cli-notes (version 1)",
        ]
        math = await get_agent(database_url, "cli-math")
        assert (math.version, math.spec.system_prompt) == (2, "You only do sums.")

    async def test_single_agent_mapping_with_owner(self, database_url: str, tmp_path: Path) -> None:
        """A file holding one agent mapping works too, stored under `--owner`."""
        path = tmp_path / "one.yaml"
        path.write_text("id: cli-solo\nname: Solo\nmodel: offline:deterministic\n")
        out = run_cli(database_url, "agents", "apply", str(path), "--owner", "erin").stdout
        assert out.strip() == "created cli-solo (version 1)"
        assert (await get_agent(database_url, "cli-solo")).owner == "erin"

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            pytest.param(
                "agents:\n"
                "  - {id: cli-bad-a, name: A, model: 'offline:deterministic'}\n"
                "  - {id: cli-bad-b, name: B, model: 'offline:deterministic', tools: [nope]}\n",
                "cli-bad-b",
                id="unknown-tool",
            ),
            pytest.param(
                "agents:\n"
                "  - {id: cli-bad-a, name: A}\n"
                "  - {id: cli-bad-b, name: B, colour: blue}\n",
                "colour",
                id="unknown-field",
            ),
            pytest.param(
                "agents:\n  - {id: cli-bad-a, name: A, budgets: {max_steps: 0}}\n",
                "budgets.max_steps",
                id="bad-value",
            ),
            pytest.param(
                "agents:\n  - {id: cli-bad-a, name: A, model: 'nope:x'}\n", "model", id="bad-model"
            ),
            pytest.param("agents:\n  - {name: A}\n", "'id' is required", id="no-id"),
            pytest.param("agents: [\n", "invalid YAML", id="bad-yaml"),
        ],
    )
    async def test_invalid_file_applies_nothing(
        self, database_url: str, tmp_path: Path, content: str, message: str
    ) -> None:
        """An invalid file exits 1 with a readable `error:` and creates no agent at all."""
        path = tmp_path / "bad.yaml"
        path.write_text(content)
        proc = run_cli(database_url, "agents", "apply", str(path), check=False)
        assert proc.returncode == 1
        assert proc.stdout == ""
        error = proc.stderr.strip().splitlines()[-1]
        assert error.startswith("error: ") and message in error
        assert "Traceback" not in proc.stderr
        assert not await agent_exists(database_url, "cli-bad-a")
        assert not await agent_exists(database_url, "cli-bad-b")


class TestChat:
    def test_remembers_within_the_session(self, database_url: str) -> None:
        """Two lines on stdin are two turns of one session: the second recalls the first."""
        proc = run_cli(
            database_url, "chat", "default", stdin="my name is Alice\nwhat is my name?\n"
        )
        lines = proc.stdout.splitlines()
        assert re.fullmatch(r"session: ses_[0-9a-f]{32}", lines[0])
        assert "you>" not in proc.stdout  # stdin is not a terminal: no prompt
        assert lines[1] == "Nice to meet you, Alice."
        assert "Alice" in lines[2]

    def test_tool_calls_and_results_are_shown(self, database_url: str) -> None:
        """An arithmetic question shows the calculator call and its result, then the reply."""
        proc = run_cli(database_url, "chat", "default", stdin="what is 2+3?\n")
        lines = proc.stdout.splitlines()
        assert lines[1] == '  [tool] calculator({"expression": "2+3"})'
        assert lines[2] == "  [result] 5"
        assert "5" in lines[3]

    def test_session_continues_and_quit_stops(self, database_url: str) -> None:
        """`--session` resumes a conversation; `/quit` ends the chat before later lines."""
        run_cli(database_url, "chat", "default", "--session", "cli-s1", stdin="my name is Bob\n")
        proc = run_cli(
            database_url,
            "chat",
            "default",
            "--session",
            "cli-s1",
            stdin="what is my name?\n/quit\nmy name is Eve\n",
        )
        assert proc.stdout.splitlines() == ["session: cli-s1", "Your name is Bob."]

    def test_unknown_agent_fails(self, database_url: str) -> None:
        """Chatting with an agent that does not exist prints `error:` and exits 1."""
        proc = run_cli(database_url, "chat", "no-such-agent", stdin="hi\n", check=False)
        assert proc.returncode == 1
        assert "error: agent 'no-such-agent' not found" in proc.stderr
        assert "Traceback" not in proc.stderr

    def test_approval_in_the_terminal(self, database_url: str, tmp_path: Path) -> None:
        """A call that needs approval is shown; `/approve` resumes the turn and runs it."""
        spec = tmp_path / "notary.yaml"
        spec.write_text(
            "id: cli-notary\nname: Notary\ntools: [save_note, read_notes]\n"
            "require_approval: [save_note]\n"
        )
        run_cli(database_url, "agents", "apply", str(spec))
        proc = run_cli(
            database_url,
            "chat",
            "cli-notary",
            stdin="note: buy milk\nhello\n/approve\nwhat are my notes?\n",
        )
        out = proc.stdout
        assert '  [approval] save_note({"text": "buy milk"}) awaits a decision' in out
        assert "waiting for a decision" in proc.stderr  # "hello" is refused meanwhile
        assert "  [result] Saved note: buy milk" in out
        assert "  [result] buy milk" in out  # read_notes after the approved save


class TestChatOverHttp:
    async def test_chat_against_a_running_server(
        self, settings: Settings, fresh_database: str
    ) -> None:
        """`chat --url` streams a real server's turns and tool calls."""
        from api.app import create_app
        from tests.support.server import running_server

        # Its own database: the key tests above turn auth on for the module's.
        s = settings.model_copy(update={"database_url": fresh_database})
        async with running_server(create_app(s)) as url:
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith("SESSIONGRAPH_") and k != "DATABASE_URL"
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "api.cli",
                "chat",
                "default",
                "--url",
                url,
                "--session",
                "cli-http-1",
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await asyncio.wait_for(
                proc.communicate(b"my name is Alice\nwhat is 2+3?\nwhat is my name?\n"),
                timeout=60,
            )
        assert proc.returncode == 0, stderr.decode()
        lines = stdout.decode().splitlines()
        assert lines[0] == "session: cli-http-1"
        assert lines[1] == "Nice to meet you, Alice."
        assert '  [tool] calculator({"expression": "2+3"})' in lines
        assert "  [result] 5" in lines
        assert lines[-1] == "Your name is Alice."
