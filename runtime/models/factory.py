"""Chat model factory: a template's :class:`ModelSpec` to a LangChain chat model.

``openai`` builds ``langchain_openai.ChatOpenAI`` for OpenAI or any OpenAI-compatible
server (``base_url``), with the Chat Completions API and streamed usage on (it is off by
default once a base URL is set). ``offline`` builds :class:`OfflineChatModel`.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import SecretStr

from runtime.agents import ModelSpec
from runtime.errors import InvalidInput, ModelUnavailable
from runtime.models.offline import OfflineChatModel
from runtime.settings import Settings

__all__ = ["make_chat_model"]

_OFFLINE_PARAMS = {"delay_seconds", "always_call_tool"}


def make_chat_model(spec: ModelSpec, settings: Settings) -> BaseChatModel:
    """Build the chat model a template names.

    Raises:
        InvalidInput: the parameters do not fit the provider.
        ModelUnavailable: the provider needs credentials that are not configured.
    """
    params: dict[str, Any] = dict(spec.params)
    if spec.provider == "offline":
        unknown = set(params) - _OFFLINE_PARAMS
        if unknown:
            raise InvalidInput(
                f"unknown offline model parameters: {sorted(unknown)}",
                allowed=sorted(_OFFLINE_PARAMS),
            )
        return OfflineChatModel(model_name=spec.name, **params)

    from langchain_openai import ChatOpenAI

    base_url = params.pop("base_url", None) or settings.openai_base_url
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if not key and not base_url:
        raise ModelUnavailable(
            "the openai provider needs SESSIONGRAPH_OPENAI_API_KEY or SESSIONGRAPH_OPENAI_BASE_URL"
        )
    # The OpenAI client retries timeouts, 429 (honouring Retry-After) and 5xx itself, with
    # exponential backoff; the guard retries malformed responses, which it does not.
    params.setdefault("max_retries", settings.model_retries)
    params.setdefault("timeout", settings.model_timeout_seconds)
    try:
        return ChatOpenAI(
            model=spec.name,
            base_url=base_url,
            # Compatible servers often need no key, but the client insists on one.
            api_key=SecretStr(key or "not-needed"),
            use_responses_api=False,
            stream_usage=True,
            **params,
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"invalid openai model parameters: {exc}") from exc
