"""Your own graphs and tools: the worked folder ``examples/support_desk`` served by the real
``sessiongraph serve``, run from that folder.

The folder (copied to a temporary directory, so deletes and state stay there) has a custom
graph with a non-message channel that uses the kit (``triage``), a graph that calls
``interrupt()`` (``review``), a factory building a graph with a subgraph (``nested``), a
Python tool and a FastMCP server over stdio; the tests add a second FastMCP server over
streamable HTTP (``search``) to its ``langgraph.json``. Clients are plain HTTP (``/v1``) and
the real ``langgraph_sdk``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.support.processes import ServeProcess, clean_env, free_port, serve_process
from tests.support.studio import langgraph_dev

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "support_desk"
MCP_SERVER = ROOT / "tests" / "support" / "mcp_server.py"
TIMEOUT = 60.0


class HttpMcp:
    """The ``search`` FastMCP server over streamable HTTP, which a test can kill and restart."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        command = [sys.executable, str(MCP_SERVER), "--root", str(self.root)]
        command += ["--transport", "streamable-http", "--port", str(self.port)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    raise AssertionError("the MCP server exited") from None
                subprocess.run(["sleep", "0.1"], check=True)
        raise AssertionError("the MCP server did not come up")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpMcp]:
    root = tmp_path_factory.mktemp("search")
    (root / "kb1.txt").write_text("Parcels ship within 2 days.")
    (root / "kb2.txt").write_text("Gift cards never expire.")
    server = HttpMcp(root, free_port())
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def desk_dir(tmp_path_factory: pytest.TempPathFactory, search: HttpMcp) -> Path:
    """The worked folder, with the ``search`` server added to its langgraph.json."""
    folder = tmp_path_factory.mktemp("desk") / "support_desk"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    config = json.loads((folder / "langgraph.json").read_text())
    config["sessiongraph"]["mcp_servers"]["search"] = {
        "transport": "streamable_http",
        "url": search.url,
        "tools": {"delete_file": {"writes": True, "requires_approval": True, "roles": ["ops"]}},
    }
    (folder / "langgraph.json").write_text(json.dumps(config, indent=2))
    return folder


@pytest.fixture(scope="module")
def desk(
    database_url: str, desk_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    log = tmp_path_factory.mktemp("logs") / "desk.log"
    with serve_process(log, clean_env(DATABASE_URL=database_url), cwd=desk_dir) as server:
        yield server


def user(content: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


def text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


async def say(
    http: httpx.AsyncClient, session: str, body: dict[str, Any], status: int = 200
) -> dict[str, Any]:
    response = await http.post(f"/v1/sessions/{session}/messages", json=body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture
async def http(desk: ServeProcess) -> Any:
    async with httpx.AsyncClient(base_url=desk.url, timeout=TIMEOUT) as client:
        yield client


class TestCustomGraph:
    async def test_memory_and_a_non_message_channel_over_v1(self, http: httpx.AsyncClient) -> None:
        """Turns of a triage session remember the user; its `topic` and `turns` persist."""
        await say(http, "t-1", {"content": "my name is Ada", "agent_id": "triage"})
        reply = await say(http, "t-1", {"content": "what is my name?"})
        assert reply["reply"] == "Your name is Ada."
        await say(http, "t-1", {"content": "I want a refund for my invoice"})
        state = (await http.get("/v1/sessions/t-1/state")).json()
        assert state["values"]["topic"] == "billing"
        assert state["values"]["turns"] == 3
        history = (await http.get("/v1/sessions/t-1/messages")).json()["items"]
        assert [m["role"] for m in history] == ["user", "assistant"] * 3

    async def test_memory_through_the_sdk(self, desk: ServeProcess) -> None:
        """The same graph through langgraph_sdk: its assistant, thread state and memory."""
        client = get_client(url=desk.url, timeout=TIMEOUT)
        assistant = await client.assistants.get("triage")
        assert assistant["graph_id"] == "triage"
        thread = (await client.threads.create())["thread_id"]
        await client.runs.wait(thread, "triage", input=user("my name is Bo"))
        values = await client.runs.wait(thread, "triage", input=user("what is my name?"))
        assert isinstance(values, dict)
        assert text(values["messages"][-1]) == "Your name is Bo."
        assert values["turns"] == 2 and values["topic"] == "general"
        threads = await client.threads.search(metadata={"graph_id": "triage"}, limit=100)
        assert thread in {t["thread_id"] for t in threads}

    async def test_input_takes_what_the_graph_takes(self, http: httpx.AsyncClient) -> None:
        """`input` may hold several messages and the graph's own keys; unknown keys are 422."""
        body = {
            "agent_id": "triage",
            "input": {
                "messages": [
                    {"role": "user", "content": "my name is Cy"},
                    {"role": "user", "content": "what is my name?"},
                ],
                "turns": 10,
            },
        }
        reply = await say(http, "t-input", body)
        assert reply["reply"] == "Your name is Cy."
        state = (await http.get("/v1/sessions/t-input/state")).json()
        assert state["values"]["turns"] == 11
        bad = {"input": {"messages": [{"role": "user", "content": "x"}], "nope": 1}}
        refused = await say(http, "t-input", bad, status=422)
        assert refused["details"]["field"] == "input"
        session = (await http.get("/v1/sessions/t-input")).json()
        assert session["turns"] == 1 and session["messages"] == 3

    async def test_streams_over_sse(self, http: httpx.AsyncClient) -> None:
        """/v1 SSE on the custom graph: tokens that add up to the reply, then done."""
        body = {"content": "hello desk", "agent_id": "triage"}
        headers = {"Accept": "text/event-stream"}
        events: list[tuple[str, Any]] = []
        async with http.stream(
            "POST", "/v1/sessions/t-sse/messages", json=body, headers=headers
        ) as response:
            assert response.status_code == 200
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    events.append((event, json.loads(line.removeprefix("data:"))))
        tokens = "".join(d["content"] for e, d in events if e == "token")
        done = [d for e, d in events if e == "done"]
        assert done and tokens == done[0]["reply"] == "You said: hello desk"

    async def test_a_runs_configurable_goes_over_the_agents(self, desk: ServeProcess) -> None:
        """A run's config.configurable reaches the graph (triage reads system_prompt there);
        the runtime's own keys in it are dropped, so the run stays on its thread."""
        client = get_client(url=desk.url, timeout=TIMEOUT)
        thread = (await client.threads.create())["thread_id"]
        config = {"configurable": {"system_prompt": "Be brief.", "thread_id": "elsewhere"}}
        values = await client.runs.wait(
            thread, "triage", input=user("what are your instructions?"), config=config
        )
        assert isinstance(values, dict)
        assert text(values["messages"][-1]) == (
            "My instructions are: Be brief. The topic is general."
        )
        state = await client.threads.get_state(thread)
        assert len(state["values"]["messages"]) == 2

    async def test_images_through_the_langgraph_api(self, desk: ServeProcess) -> None:
        """An image block reaches the model as given and is stored as a block."""
        client = get_client(url=desk.url, timeout=TIMEOUT)
        thread = (await client.threads.create())["thread_id"]
        blocks = [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]
        values = await client.runs.wait(thread, "triage", input=user(blocks))
        assert isinstance(values, dict)
        assert values["messages"][0]["content"] == blocks
        assert text(values["messages"][-1]).startswith("I see 1 image.")

    async def test_oversized_blocks_are_refused_and_change_nothing(
        self, desk: ServeProcess
    ) -> None:
        """Too many blocks is a 422 naming the limit; the thread is as it was."""
        async with httpx.AsyncClient(base_url=desk.url, timeout=TIMEOUT) as http:
            thread = (await http.post("/threads", json={})).json()["thread_id"]
            blocks = [{"type": "text", "text": "x"}] * 40
            body = {"assistant_id": "triage", "input": user(blocks)}
            response = await http.post(f"/threads/{thread}/runs/wait", json=body)
            assert response.status_code == 422, response.text
            assert "MAX_CONTENT_BLOCKS" in response.text
            state = (await http.get(f"/threads/{thread}/state")).json()
            assert state["values"] == {}


class TestInterrupt:
    async def test_resumed_through_the_sdk(self, desk: ServeProcess) -> None:
        """`review` pauses on its interrupt; Command(resume=...) finishes the run."""
        client = get_client(url=desk.url, timeout=TIMEOUT)
        thread = (await client.threads.create())["thread_id"]
        await client.runs.wait(thread, "review", input=user("my parcel is late"))
        paused = await client.threads.get(thread)
        assert paused["status"] == "interrupted"
        (interrupt,) = next(iter(paused["interrupts"].values()))
        assert interrupt["value"]["question"] == "Send this reply?"
        values = await client.runs.wait(thread, "review", command={"resume": {"approved": True}})
        assert isinstance(values, dict)
        assert text(values["messages"][-1]) == "Thanks for writing about: my parcel is late"
        assert (await client.threads.get(thread))["status"] == "idle"

    async def test_resumed_through_v1(self, http: httpx.AsyncClient) -> None:
        """Over /v1 the turn answers `interrupted`; a resume with a value finishes it."""
        paused = await say(http, "r-1", {"content": "refund please", "agent_id": "review"})
        assert paused["status"] == "interrupted"
        assert paused["interrupts"][0]["value"]["draft"].endswith("refund please")
        session = (await http.get("/v1/sessions/r-1")).json()
        assert session["awaiting_approval"] and session["interrupts"]
        refused = await say(http, "r-1", {"content": "hello?"}, status=409)
        assert refused["error"] == "awaiting_approval"
        wrong = await http.post(
            "/v1/sessions/r-1/resume", json={"decisions": [{"action": "approve"}]}
        )
        assert wrong.status_code == 422, wrong.text
        done = await http.post(
            "/v1/sessions/r-1/resume", json={"value": {"approved": False, "note": "Ask Ops."}}
        )
        assert done.status_code == 200, done.text
        assert done.json()["reply"] == "The reply was held back. Ask Ops."
        assert done.json()["status"] == "completed"


class TestSubgraphs:
    async def test_subgraph_state_and_stream(self, desk: ServeProcess) -> None:
        """Streaming with subgraphs shows the subgraph's namespace; its paused state is read
        with subgraphs=true; the factory's configurable (max_findings) applies."""
        client = get_client(url=desk.url, timeout=TIMEOUT)
        subgraphs = await client.assistants.get_subgraphs("nested")
        assert "research" in subgraphs
        thread = (await client.threads.create())["thread_id"]
        events = [
            part.event
            async for part in client.runs.stream(
                thread,
                "nested",
                input=user("confirm shipping delays today"),
                stream_mode="updates",
                stream_subgraphs=True,
            )
        ]
        assert any(e.startswith("updates|research:") for e in events), events
        state = await client.threads.get_state(thread, subgraphs=True)
        (task,) = state["tasks"]
        assert task["name"] == "research"
        assert task["state"]["values"]["findings"] == [
            "note on confirm",
            "note on shipping",
            "note on delays",
        ]
        values = await client.runs.wait(thread, "nested", command={"resume": {"keep": True}})
        assert isinstance(values, dict)
        assert text(values["messages"][-1]).startswith("I found 3: note on confirm")

    async def test_an_assistant_of_the_graph_with_its_own_configurable(
        self, desk: ServeProcess
    ) -> None:
        """An assistant created through the SDK for a project graph passes its configurable
        keys to the graph's factory (max_findings)."""
        client = get_client(url=desk.url, timeout=TIMEOUT)
        assistant = await client.assistants.create(
            graph_id="nested", config={"configurable": {"max_findings": 1}}, name="Brief"
        )
        assert assistant["graph_id"] == "nested"
        assert assistant["config"]["configurable"]["max_findings"] == 1
        thread = (await client.threads.create())["thread_id"]
        values = await client.runs.wait(
            thread, assistant["assistant_id"], input=user("shipping delays today")
        )
        assert isinstance(values, dict)
        assert text(values["messages"][-1]) == "I found 1: note on shipping."

    async def test_graph_drawing_and_schemas(self, http: httpx.AsyncClient) -> None:
        """/assistants/{id}/graph and /schemas describe the project's graph."""
        drawing = (await http.get("/assistants/triage/graph")).json()
        assert {"classify", "agent", "tools"} <= {n["id"] for n in drawing["nodes"]}
        schemas = (await http.get("/assistants/triage/schemas")).json()
        assert schemas["graph_id"] == "triage"
        assert {"messages", "topic", "turns"} <= set(schemas["state_schema"]["properties"])


class TestTools:
    async def test_listed_with_their_source(self, http: httpx.AsyncClient) -> None:
        tools = {t["name"]: t for t in (await http.get("/v1/tools")).json()["items"]}
        assert tools["lookup_order"]["source"] == "python:desk_tools:lookup_order"
        assert tools["files_read_file"]["source"] == "mcp:files"
        assert tools["search_delete_file"]["requires_approval"]
        assert tools["search_delete_file"]["roles"] == ["ops"]

    async def test_python_tool_sees_its_session(self, http: httpx.AsyncClient) -> None:
        body = {"content": 'use tool lookup_order with {"order_id": "A-1"}', "agent_id": "triage"}
        reply = await say(http, "tools-1", body)
        assert (
            reply["reply"]
            == "lookup_order returned: order A-1: shipped on Monday (asked in tools-1)."
        )

    async def test_both_mcp_servers(self, http: httpx.AsyncClient) -> None:
        stdio = await say(
            http,
            "tools-2",
            {"content": 'use tool files_read_file with {"name": "faq.txt"}', "agent_id": "triage"},
        )
        assert stdio["reply"] == "files_read_file returned: Refunds take 5 working days."
        remote = await say(
            http, "tools-2", {"content": 'use tool search_read_file with {"name": "kb2.txt"}'}
        )
        assert remote["reply"] == "search_read_file returned: Gift cards never expire."

    async def test_mcp_write_needs_its_role_approval_and_runs_once(
        self, http: httpx.AsyncClient, search: HttpMcp
    ) -> None:
        """A caller without the ops role is not offered the write; ops must approve it; the
        same call again returns the recorded result instead of deleting twice."""
        ask = 'use tool search_delete_file with {"name": "kb1.txt"}'
        viewer = await say(
            http, "tools-3", {"content": ask, "agent_id": "triage", "roles": ["viewer"]}
        )
        assert not any(m.get("tool_calls") for m in viewer["messages"])
        assert (search.root / "kb1.txt").exists()
        paused = await say(http, "tools-3", {"content": ask, "roles": ["ops"]})
        assert paused["status"] == "awaiting_approval"
        assert paused["pending_approvals"][0]["name"] == "search_delete_file"
        done = await http.post(
            "/v1/sessions/tools-3/resume",
            json={"decisions": [{"action": "approve"}], "roles": ["ops"]},
        )
        assert done.status_code == 200, done.text
        assert done.json()["reply"] == "search_delete_file returned: deleted kb1.txt."
        assert not (search.root / "kb1.txt").exists()
        again = await say(http, "tools-3", {"content": ask, "roles": ["ops"]})
        resumed = await http.post(
            "/v1/sessions/tools-3/resume",
            json={"decisions": [{"action": "approve"}], "roles": ["ops"]},
        )
        assert again["status"] == "awaiting_approval"
        assert resumed.json()["reply"] == "search_delete_file returned: deleted kb1.txt."

    async def test_a_dead_mcp_server_is_an_error_result_then_reconnects(
        self, http: httpx.AsyncClient, search: HttpMcp
    ) -> None:
        ask = {"content": "use tool search_list_files with {}", "agent_id": "triage"}
        search.kill()
        try:
            failed = await say(http, "tools-4", ask)
            assert failed["reply"].startswith("The tool search_list_files failed")
            results = [m for m in failed["messages"] if m["role"] == "tool"]
            assert results[0]["status"] == "error"
        finally:
            search.start()
        ok = await say(http, "tools-4", ask)
        assert ok["reply"].startswith("search_list_files returned:")
        assert "kb2.txt" in ok["reply"]


class TestReplicas:
    async def test_restart_and_two_replicas_serve_one_session(
        self, database_url: str, desk_dir: Path, tmp_path: Path
    ) -> None:
        """A session of the custom graph survives a restart, and two replicas serve its
        alternate turns; its non-message channel counts every turn."""
        env = clean_env(DATABASE_URL=database_url)
        with serve_process(tmp_path / "a.log", env, cwd=desk_dir) as first:
            async with httpx.AsyncClient(base_url=first.url, timeout=TIMEOUT) as http:
                await say(http, "rep-1", {"content": "my name is Dee", "agent_id": "triage"})
        with (
            serve_process(tmp_path / "b.log", env, cwd=desk_dir) as second,
            serve_process(tmp_path / "c.log", env, cwd=desk_dir) as third,
        ):
            for turn in range(4):
                server = (second, third)[turn % 2]
                async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
                    reply = await say(http, "rep-1", {"content": "what is my name?"})
                assert reply["reply"] == "Your name is Dee."
            async with httpx.AsyncClient(base_url=second.url, timeout=TIMEOUT) as http:
                state = (await http.get("/v1/sessions/rep-1/state")).json()
        assert state["values"]["turns"] == 5
        assert len(state["values"]["messages"]) == 10


BAD_CONFIGS: list[tuple[dict[str, Any], str]] = [
    ({"graphs": {"x": "./missing.py:graph"}}, "graphs.x: file"),
    ({"graphs": {"x": "no_such_module:graph"}}, "graphs.x: module 'no_such_module' not found"),
    ({"graphs": {"x": "desk_tools:ORDERS"}}, "graphs.x: desk_tools:ORDERS is a dict, not a graph"),
    ({"graphs": {"x": "./bad.py:raises"}}, "graphs.x: the factory ./bad.py:raises raised"),
    ({"graphs": {"x": "./bad.py:saved"}}, "compiled with its own checkpointer"),
    ({"graphs": {"react": "./triage.py:graph"}}, "graphs.react: the name 'react' is the built-in"),
    (
        {"sessiongraph": {"tools": {"calculator": {"import": "desk_tools:refund"}}}},
        "sessiongraph.tools.calculator",
    ),
    ({"sessiongraph": {"tools": {"t": {"import": "nope:t"}}}}, "sessiongraph.tools.t"),
    ({"sessiongraph": {"prompts": {}}}, "sessiongraph.prompts: unknown key"),
    ({"graphs": {"default": "./triage.py:graph"}}, "graphs.default: 'default' is the default"),
]

BAD_GRAPHS = """
from langgraph.checkpoint.memory import InMemorySaver
from triage import builder

def raises(config):
    raise RuntimeError("no database credentials")

saved = builder.compile(checkpointer=InMemorySaver())
"""


class TestBadConfiguration:
    @pytest.mark.parametrize(("config", "message"), BAD_CONFIGS)
    def test_stops_start_up_with_one_message(
        self, desk_dir: Path, tmp_path: Path, config: dict[str, Any], message: str
    ) -> None:
        """Each bad entry stops `serve` before anything starts, with one line naming it."""
        folder = tmp_path / "project"
        shutil.copytree(desk_dir, folder)
        (folder / "bad.py").write_text(BAD_GRAPHS)
        (folder / "langgraph.json").write_text(json.dumps({"dependencies": ["."], **config}))
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(free_port())],
            cwd=folder,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and message in errors[0], done.stderr
        assert "Traceback" not in done.stderr

    def test_a_missing_config_file_is_named(self, tmp_path: Path) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", "serve", "--config", str(tmp_path / "nope.json")],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1
        assert "nope.json: no such file" in done.stderr


class TestLanggraphDev:
    @pytest.mark.timeout(300)
    async def test_langgraph_dev_loads_every_graph_of_the_folder(self, tmp_path: Path) -> None:
        """`langgraph dev` on the same langgraph.json serves all three graphs (it ignores the
        sessiongraph key), and the kit falls back to the offline model there."""
        folder = tmp_path / "support_desk"
        shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
        with langgraph_dev(folder / "langgraph.json", tmp_path / "dev.log") as url:
            client = get_client(url=url, timeout=TIMEOUT)
            graphs = {a["graph_id"] for a in await client.assistants.search(limit=50)}
            assert {"triage", "review", "nested"} <= graphs
            thread = (await client.threads.create())["thread_id"]
            values = await client.runs.wait(thread, "triage", input=user("my name is Eve"))
            assert isinstance(values, dict)
            assert values["topic"] == "general"
            assert "Eve" in text(values["messages"][-1])


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Bring your own graph and tools") : text.index("## Configuration")]


class TestReadme:
    def test_the_readme_shows_the_folder_as_it_is(self) -> None:
        """The README's langgraph.json and triage.py are the worked folder's files."""
        section = readme_section()
        assert (EXAMPLE / "langgraph.json").read_text() in section
        assert (EXAMPLE / "triage.py").read_text() in section

    def test_the_readme_commands_run_against_the_folder(self, desk: ServeProcess) -> None:
        """The section's curl commands run as written against `serve` in the folder."""
        (block,) = [b for b in re.findall(r"```bash\n(.*?)```", readme_section(), re.S)]
        commands = [line for line in block.splitlines() if not line.startswith("cd ")]
        script = 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; echo; }\n'
        script += "\n".join(commands).replace("localhost:8000", desk.url.removeprefix("http://"))
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert (
            "lookup_order returned: order A-1: shipped on Monday (asked in desk-1)." in done.stdout
        )
        assert '"topic":"general"' in done.stdout
        assert '"status":"interrupted"' in done.stdout
        assert "Thanks for writing about: my parcel is late" in done.stdout
