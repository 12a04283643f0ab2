"""An LM on an OpenAI-compatible HTTP endpoint: llama.cpp's llama-server, llama-cpp-python's
server, vLLM, Ollama, or the OpenAI API itself.

    lm = open_lm("qwen2.5-7b-instruct", endpoint="http://127.0.0.1:8080/v1")

The output schema travels as a JSON-schema response format and the answer is validated against
the pydantic model like every other call. Servers disagree on the request shape: the OpenAI form
``{"type": "json_schema", "json_schema": {...}}`` (llama-server, vLLM, Ollama, OpenAI) is tried
first; a server that rejects it is asked with ``{"type": "json_object", "schema": ...}``
(llama-cpp-python's server), and the form that worked is remembered. The disk cache keys name
the endpoint's model, not its URL, so moving a server keeps the cache.

The key, if any, comes from the environment (``api_key_env``, default ``OPENAI_API_KEY``), never
from a config file. Timeouts and connection failures are retried with exponential backoff, then
raised as an ``EndpointError`` naming the endpoint.
"""

from __future__ import annotations

import os
import threading
import time

from pydantic import BaseModel

from localsym.errors import EndpointError, ModelNotFoundError, TruncatedOutputError
from localsym.lm.base import LM, Completion, Message, SamplingParams, schema_of

FORMATS = ("json_schema", "json_object")


class OpenAICompatible(LM):
    def __init__(self, model: str, endpoint: str, *, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 120.0, retries: int = 3, backoff: float = 1.0,
                 concurrency: int = 4, response_format: str | None = None):
        import httpx  # noqa: PLC0415 (the HTTP client loads only for an endpoint backend)

        self.model, self.endpoint = model, endpoint.rstrip("/")
        self.retries, self.backoff = retries, backoff
        self.max_concurrency = concurrency  # requests in flight at once (the server's slots)
        self._format = response_format
        self._checked = False
        self._lock = threading.Lock()
        key = os.environ.get(api_key_env)
        self._http = httpx.Client(base_url=self.endpoint, timeout=timeout,
                                  headers={"Authorization": f"Bearer {key}"} if key else {},
                                  limits=httpx.Limits(max_connections=max(concurrency, 1) + 2))

    def identity(self) -> dict:
        return {"backend": "openai-compatible", "model": self.model}

    def describe(self) -> str:
        return f"{self.model} at {self.endpoint}"

    # -- HTTP -----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs):
        import httpx  # noqa: PLC0415 (the HTTP client loads only for an endpoint backend)

        last: Exception | str | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                last = err
                continue
            if response.status_code in (429, 502, 503, 504):  # busy or restarting: try again
                last = f"HTTP {response.status_code}"
                continue
            return response
        if isinstance(last, httpx.TimeoutException):
            raise EndpointError(f"the endpoint {self.endpoint} timed out ({type(last).__name__}) "
                                f"{self.retries + 1} times", "raise models.timeout, lower "
                                "models.concurrency, or check that the server is not overloaded")
        what = f"is unreachable ({type(last).__name__})" if isinstance(last, Exception) else \
            f"answered {last}"
        raise EndpointError(f"the endpoint {self.endpoint} {what} after {self.retries + 1} tries",
                            "start the server (llama-server, vllm serve, ollama serve, "
                            "python -m llama_cpp.server) or fix models.endpoint")

    def check_model(self) -> None:
        """Fail early, naming what the server has, if it does not serve ``self.model``."""
        response = self._request("GET", "/models")
        if response.status_code != 200:
            return  # not every server lists its models; the first call will tell
        names = [m.get("id") for m in response.json().get("data", [])]
        if names and self.model not in names:
            raise ModelNotFoundError(f"the endpoint {self.endpoint} does not serve model "
                                     f"{self.model!r}; it has {names}",
                                     "set models.agent to one of those names (or start the "
                                     "server with that model / alias)")

    def _body(self, messages, schema, params, fmt: str) -> dict:
        json_schema = schema_of(schema)
        body = {"model": self.model, "messages": [m.model_dump() for m in messages],
                "temperature": params.temperature, "top_p": params.top_p,
                "max_tokens": params.max_tokens_limit, "seed": params.seed}
        if params.top_k:
            body["top_k"] = params.top_k
        if params.repeat_penalty != 1.0:
            body["repeat_penalty"] = params.repeat_penalty
        if fmt == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": schema.__name__[:64], "schema": json_schema, "strict": True}}
        else:
            body["response_format"] = {"type": "json_object", "schema": json_schema}
        return body

    def complete(self, messages: list[Message], schema: type[BaseModel],
                 params: SamplingParams) -> Completion:
        with self._lock:
            if not self._checked:
                self.check_model()
                self._checked = True
        start = time.perf_counter()
        formats = [self._format] if self._format else list(FORMATS)
        refusals = []
        for fmt in formats:
            response = self._request("POST", "/chat/completions",
                                     json=self._body(messages, schema, params, fmt))
            if response.status_code == 404:
                raise ModelNotFoundError(f"the endpoint {self.endpoint} answered 404 for model "
                                         f"{self.model!r}: {response.text[:200]}",
                                         "check models.endpoint (it ends in /v1) and the model")
            if response.status_code >= 400:
                text = response.text[:300]
                if "response_format" in text or "json_schema" in text:
                    refusals.append(f"{fmt}: HTTP {response.status_code} {text[:160]}")
                    continue
                raise EndpointError(f"the endpoint {self.endpoint} answered HTTP "
                                    f"{response.status_code}: {text}",
                                    "check the server's log; the request was a plain chat "
                                    "completion with a JSON-schema response format")
            self._format = fmt
            break
        else:
            raise EndpointError(f"the endpoint {self.endpoint} supports no JSON-schema "
                                f"structured output ({'; '.join(refusals)})",
                                "use a server with structured outputs: llama-server, vLLM, "
                                "Ollama >= 0.5, or python -m llama_cpp.server")
        data = response.json()
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        usage = data.get("usage") or {}
        if choice.get("finish_reason") == "length":
            raise TruncatedOutputError(
                f"the answer was cut off at max_tokens_limit={params.max_tokens_limit} tokens by "
                f"{self.describe()}; it starts {text[:60]!r}",
                "raise max_tokens_limit, or ask for a shorter answer")
        return Completion(text=text.strip(), prompt_tokens=usage.get("prompt_tokens", 0),
                          prompt_tokens_evaluated=usage.get("prompt_tokens", 0),
                          completion_tokens=usage.get("completion_tokens", 0),
                          seconds=time.perf_counter() - start)

    def close(self) -> None:
        self._http.close()
