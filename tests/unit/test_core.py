"""Unit tests of the runtime's pure parts: settings, ids, tools, serializer, graph input."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

import runtime
from graphs.react import model_input
from runtime.agents import ModelSpec
from runtime.engine import strict_serializer
from runtime.errors import InvalidInput
from runtime.ids import validate_id
from runtime.settings import Settings, env_names
from runtime.tools import calculator, default_registry


class TestSettings:
    def test_database_url_standard_name(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """DATABASE_URL is read without the prefix; SESSIONGRAPH_* for the rest."""
        monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
        monkeypatch.setenv("SESSIONGRAPH_WORKERS", "3")
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.database_url == "postgresql://u@h/db" and settings.workers == 3

    def test_default_model_follows_the_key(self) -> None:
        """No key: the offline model; a key: OpenAI; an explicit choice wins."""
        assert Settings(_env_file=None).resolved_default_model() == "offline:deterministic"  # type: ignore[call-arg]
        keyed = Settings(_env_file=None, openai_api_key="sk-x")  # type: ignore[call-arg]
        assert keyed.resolved_default_model() == "openai:gpt-4o-mini"
        chosen = Settings(_env_file=None, default_model="openai:gpt-4.1")  # type: ignore[call-arg]
        assert chosen.resolved_default_model() == "openai:gpt-4.1"

    def test_empty_values_mean_unset(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An empty variable (`FOO=` in compose) falls back to the default."""
        monkeypatch.setenv("SESSIONGRAPH_OPENAI_BASE_URL", "")
        monkeypatch.setenv("SESSIONGRAPH_PORT", "")
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.openai_base_url is None and settings.port == 8000

    def test_pool_bounds_are_checked(self) -> None:
        """A minimum pool size above the maximum is refused at start-up."""
        with pytest.raises(ValueError, match="pool_min_size"):
            Settings(_env_file=None, pool_min_size=5, pool_max_size=2)  # type: ignore[call-arg]

    def test_env_names_cover_every_field(self) -> None:
        """Every field has an environment name, prefixed except DATABASE_URL."""
        names = env_names()
        assert set(names) == set(Settings.model_fields)
        assert names["database_url"] == "DATABASE_URL"
        assert all(v.startswith("SESSIONGRAPH_") for k, v in names.items() if k != "database_url")


class TestIds:
    @pytest.mark.parametrize("good", ["a", "ses_123", "user:42", "A.b-c_d", "x" * 128])
    def test_valid(self, good: str) -> None:
        """Letters, digits and ._:- up to 128 characters are accepted."""
        assert validate_id(good, kind="session_id") == good

    @pytest.mark.parametrize("bad", ["", " ", "a b", "x" * 129, "-a", "a/b", "é", "a\n"])
    def test_invalid(self, bad: str) -> None:
        """Anything else is InvalidInput naming the field."""
        with pytest.raises(InvalidInput) as info:
            validate_id(bad, kind="session_id")
        assert info.value.details["field"] == "session_id"

    def test_model_spec_parse(self) -> None:
        """`provider:name` parses; an unknown provider is InvalidInput."""
        assert ModelSpec.parse("openai:gpt-4o") == ModelSpec(provider="openai", name="gpt-4o")
        assert ModelSpec.parse("offline").name == "deterministic"
        with pytest.raises(InvalidInput):
            ModelSpec.parse("anthropic:claude")


class TestCalculator:
    @pytest.mark.parametrize(
        ("expression", "result"),
        [
            ("6 * 7", "42"),
            ("(2 + 3) * 4", "20"),
            ("7 / 2", "3.5"),
            ("2 ^ 10", "1024"),
            ("sqrt(16) + -1", "3"),
            ("10 % 4", "2"),
        ],
    )
    def test_arithmetic(self, expression: str, result: str) -> None:
        """Arithmetic evaluates exactly."""
        assert calculator.invoke({"expression": expression}) == result

    @pytest.mark.parametrize(
        "expression", ["__import__('os')", "1 / 0", "2 ** 100000", "a + 1", "[1, 2]", "1" * 300]
    )
    def test_refuses_anything_else(self, expression: str) -> None:
        """Names, calls, huge powers and bad input give an error string, never run code."""
        assert calculator.invoke({"expression": expression}).startswith("error:")

    def test_registry_knows_builtins(self) -> None:
        """The default registry resolves the built-ins and refuses unknown names."""
        registry = default_registry()
        assert registry.names() == ["calculator", "current_time", "read_notes", "save_note"]
        assert registry.get("save_note").writes and not registry.get("calculator").writes
        with pytest.raises(InvalidInput):
            registry.resolve(["calculator", "shell"])


class TestStrictSerializer:
    def test_messages_round_trip(self) -> None:
        """LangChain messages are on the allow-list and load back intact."""
        serde = strict_serializer()
        message = AIMessage("hi", tool_calls=[{"id": "c1", "name": "calculator", "args": {}}])
        assert serde.loads_typed(serde.dumps_typed([message])) == [message]

    def test_unlisted_types_are_not_revived(self) -> None:
        """A type off the allow-list is not imported on load, unlike the permissive default."""
        from runtime.agents import Budgets

        value = Budgets(max_steps=3)
        payload = JsonPlusSerializer(allowed_msgpack_modules=True).dumps_typed(value)
        assert JsonPlusSerializer(allowed_msgpack_modules=True).loads_typed(payload) == value
        assert not isinstance(strict_serializer().loads_typed(payload), Budgets)
        assert strict_serializer().pickle_fallback is False


class TestModelInput:
    def test_unanswered_tool_call_gets_a_result_in_the_input_only(self) -> None:
        """A stored call without a result reaches the model answered "not executed"."""
        call = {"id": "c1", "name": "save_note", "args": {"text": "x"}}
        history = [HumanMessage("note: x"), AIMessage("", tool_calls=[call]), HumanMessage("hi")]
        sent = model_input("sys", history, None)
        assert [m.type for m in sent] == ["system", "human", "ai", "tool", "human"]
        assert isinstance(sent[3], ToolMessage) and sent[3].tool_call_id == "c1"
        assert sent[3].status == "error" and len(history) == 3  # history untouched

    def test_trimming_keeps_tool_pairs_and_system_prompt(self) -> None:
        """Trimming starts on a user message, so tool calls keep their results."""
        history = []
        for i in range(30):
            history += [
                HumanMessage(f"question {i} " + "word " * 20),
                AIMessage("", tool_calls=[{"id": f"c{i}", "name": "calculator", "args": {}}]),
                ToolMessage("1", tool_call_id=f"c{i}"),
                AIMessage(f"answer {i}"),
            ]
        trimmed = model_input("sys", history, max_context_tokens=300)
        assert trimmed[0].content == "sys"
        assert isinstance(trimmed[1], HumanMessage)
        assert 2 < len(trimmed) < len(history)
        assert trimmed[-1] is history[-1]
        assert len(model_input("sys", history, None)) == len(history) + 1


class TestPublicSurface:
    def test_all_is_sorted_and_importable(self) -> None:
        """The package's public names are sorted and all resolve."""
        assert runtime.__all__ == sorted(runtime.__all__)
        for name in runtime.__all__:
            assert getattr(runtime, name) is not None

    @pytest.mark.parametrize("module", ["graphs", "graphs.react", "api.app", "runtime"])
    def test_each_package_imports_first(self, module: str) -> None:
        """Any package can be the first import of a fresh interpreter (no import cycle)."""
        import subprocess
        import sys

        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
