"""Model failures as the caller sees them: an OpenAI client error to a runtime error.

The OpenAI client has already retried timeouts, 429 and 5xx by the time an error gets
here; what is left is mapped onto :class:`~runtime.errors.ModelUnavailable` and its
subclasses, with ``retryable`` telling the client whether resending may succeed.
"""

from __future__ import annotations

import openai

from runtime.errors import ModelBadResponse, ModelRateLimited, ModelRejected, ModelUnavailable

__all__ = ["model_error"]


def model_error(exc: BaseException, session_id: str) -> ModelUnavailable | None:
    """A model failure (after the client's own retries) as the caller should see it.

    ``retryable`` tells the client whether resending the same message may succeed; the
    session is unchanged either way.

    Returns:
        The public error, or None when ``exc`` is not an OpenAI client error.
    """
    if not isinstance(exc, openai.OpenAIError):
        return None
    status = getattr(exc, "status_code", None)
    what = f"the model failed: {type(exc).__name__}" + (f" (HTTP {status})" if status else "")
    if isinstance(exc, openai.RateLimitError):
        retry_after = exc.response.headers.get("retry-after")
        return ModelRateLimited(
            what + "; retry later",
            session_id=session_id,
            status_code=status,
            retryable=True,
            retry_after=retry_after,
        )
    if isinstance(exc, openai.APIStatusError) and status is not None and status < 500:
        return ModelRejected(what, session_id=session_id, status_code=status, retryable=False)
    if isinstance(exc, openai.APIResponseValidationError):
        return ModelBadResponse(what, session_id=session_id, retryable=True)
    return ModelUnavailable(what, session_id=session_id, status_code=status, retryable=True)
