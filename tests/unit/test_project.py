"""The project file, read as ``langgraph dev`` reads it: no database, no server."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from langgraph.graph import START, StateGraph
from typing_extensions import TypedDict

from runtime.errors import ConfigError, InvalidInput
from runtime.project import (
    BUILTIN_GRAPH,
    GraphRegistry,
    ProjectConfig,
    apply_environment,
    input_keys,
    read_project,
)
from runtime.project.graphs import check_breakpoints


class _State(TypedDict, total=False):
    topic: str
    count: int


def _builder() -> StateGraph[_State, None, _State, _State]:
    builder = StateGraph(_State)
    builder.add_node("n", lambda s: {"count": 1})
    builder.add_edge(START, "n")
    return builder


def _write(folder: Path, config: object) -> Path:
    path = folder / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


class TestReadProject:
    def test_no_file_in_the_working_directory_is_an_empty_project(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without --config and without ./langgraph.json, only the built-in graph is served."""
        monkeypatch.chdir(tmp_path)
        assert read_project(None).graphs == {}

    def test_a_folder_means_its_langgraph_json(self, tmp_path: Path) -> None:
        _write(tmp_path, {"graphs": {"g": "./g.py:graph"}, "python_version": "3.11"})
        project = read_project(tmp_path)
        assert project.graphs == {"g": "./g.py:graph"}
        assert project.base_dir == tmp_path.resolve()

    @pytest.mark.parametrize(
        ("content", "entry"),
        [("{not json", "langgraph.json"), ("[]", "langgraph.json"), ('{"graphs": []}', "graphs")],
    )
    def test_a_malformed_file_names_where(self, tmp_path: Path, content: str, entry: str) -> None:
        (tmp_path / "langgraph.json").write_text(content)
        with pytest.raises(ConfigError) as caught:
            read_project(tmp_path / "langgraph.json")
        assert entry in caught.value.entry

    def test_a_named_file_that_is_missing(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="no such file"):
            read_project(tmp_path / "nope.json")


class TestEnvironment:
    def test_dependencies_go_on_sys_path_and_env_never_overrides(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Local dependency folders are importable; the environment wins over `env`."""
        monkeypatch.setattr(sys, "path", list(sys.path))
        monkeypatch.setenv("SG_KEEP", "mine")
        monkeypatch.delenv("SG_NEW", raising=False)
        (tmp_path / "lib").mkdir()
        config = {"dependencies": ["./lib"], "env": {"SG_KEEP": "theirs", "SG_NEW": "set"}}
        apply_environment(ProjectConfig.model_validate({**config, "base_dir": tmp_path}))
        assert str((tmp_path / "lib").resolve()) in sys.path
        assert os.environ["SG_KEEP"] == "mine"
        assert os.environ["SG_NEW"] == "set"
        monkeypatch.delenv("SG_NEW")

    def test_env_may_be_a_dotenv_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("SG_FROM_FILE", raising=False)
        (tmp_path / ".env").write_text("SG_FROM_FILE=yes\n")
        apply_environment(ProjectConfig.model_validate({"env": ".env", "base_dir": tmp_path}))
        assert os.environ.pop("SG_FROM_FILE") == "yes"

    def test_a_missing_env_file_stops(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="env: no such file"):
            apply_environment(ProjectConfig.model_validate({"env": ".env", "base_dir": tmp_path}))


class TestGraphRegistry:
    def test_the_builtin_may_be_listed_but_not_replaced(self, tmp_path: Path) -> None:
        registry = GraphRegistry.load({BUILTIN_GRAPH: "graphs.react:graph"}, tmp_path)
        assert registry.names() == [BUILTIN_GRAPH]
        with pytest.raises(ConfigError, match="graphs.react: the name 'react' is the built-in"):
            GraphRegistry.load({BUILTIN_GRAPH: "./mine.py:graph"}, tmp_path)

    def test_a_file_graph_and_its_kind(self, tmp_path: Path) -> None:
        (tmp_path / "mine.py").write_text(
            "from langgraph.graph import START, StateGraph\n"
            "from typing_extensions import TypedDict\n"
            "class S(TypedDict):\n    x: int\n"
            "b = StateGraph(S)\nb.add_node('n', lambda s: {'x': 1})\nb.add_edge(START, 'n')\n"
            "graph = b.compile()\nbuilder = b\nNOT_A_GRAPH = 3\n"
            "def factory(config):\n    return b\n"
        )
        registry = GraphRegistry.load(
            {"a": "./mine.py:graph", "b": "./mine.py:builder", "c": "./mine.py:factory"}, tmp_path
        )
        assert registry.names() == [BUILTIN_GRAPH, "a", "b", "c"]
        assert [g.is_factory for g in registry.user_graphs()] == [False, False, True]
        with pytest.raises(ConfigError, match="graphs.x: ./mine.py:NOT_A_GRAPH is a int"):
            GraphRegistry.load({"x": "./mine.py:NOT_A_GRAPH"}, tmp_path)

    def test_input_keys_are_the_input_schema(self) -> None:
        assert input_keys(_builder().compile()) == {"topic", "count"}


class TestNames:
    def test_a_name_given_twice_is_refused(self, tmp_path: Path) -> None:
        """JSON would keep the last of two `triage` entries; the project file refuses it."""
        (tmp_path / "langgraph.json").write_text(
            '{"graphs": {"triage": "./a.py:graph", "triage": "./b.py:graph"}}'
        )
        with pytest.raises(ConfigError, match="the name 'triage' appears twice"):
            read_project(tmp_path)

    @pytest.mark.parametrize(
        ("name", "message"),
        [("my graph", "a graph name is 1-128"), ("default", "the default agent's id")],
    )
    def test_a_graph_name_is_an_agent_id(self, tmp_path: Path, name: str, message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            GraphRegistry.load({name: "./g.py:graph"}, tmp_path)


class TestReservedKeys:
    @pytest.mark.parametrize(
        "key", ["thread_id", "owner", "checkpoint_id", "__pregel_task_id", "sessiongraph_guard"]
    )
    def test_an_agent_may_not_set_the_runtimes_keys(self, key: str) -> None:
        """An agent's configurable cannot pin a checkpoint or pose as another caller."""
        from pydantic import ValidationError

        from runtime.agents import TemplateSpec

        with pytest.raises(ValidationError, match="configurable may not set"):
            TemplateSpec(name="x", configurable={key: "1"})
        assert (
            TemplateSpec(name="x", configurable={"max_findings": 2}).configurable_values()[
                "max_findings"
            ]
            == 2
        )


class TestBreakpoints:
    def test_unknown_nodes_are_refused_by_name(self) -> None:
        """Breakpoints naming nodes the graph lacks: InvalidInput naming them and its nodes."""
        with pytest.raises(InvalidInput) as raised:
            check_breakpoints(_builder(), (["n", "x"], []))
        assert "['x']" in raised.value.message
        assert raised.value.details == {"field": "interrupt_before", "nodes": ["n"]}

    def test_known_nodes_and_every_node_pass_on_built_and_compiled_graphs(self) -> None:
        """Known names and "*" are accepted, before or after compiling."""
        for graph in (_builder(), _builder().compile()):
            check_breakpoints(graph, (["n"], "*"))
            check_breakpoints(graph, ((), ()))
