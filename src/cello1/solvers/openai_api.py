"""``openai``: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM or SGLang
server, Ollama, llama.cpp server …), with concurrency and retries.

Standard library only (``urllib`` + threads), so no client package is needed.

    solver = OpenAISolver(model="gpt-4o-mini")                                # key in $OPENAI_API_KEY
    solver = OpenAISolver(model="Cell-o1", base_url="http://localhost:8000/v1")  # a local server
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from email.utils import parsedate_to_datetime
from typing import Any

from cello1.errors import InputError
from cello1.puzzle import DEFAULT_PROMPT_LAYOUT, Puzzle, check_prompt_layout
from cello1.solvers.base import Ability, Completion, Solver
from cello1.solvers.llm_common import reject_unsupported, resolve_sampling

OPENAI_URL = "https://api.openai.com/v1"
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
FATAL_STATUS = {401, 403, 404}
# --constrain-via: how a server takes the answer grammar, and what it guarantees
CONSTRAIN_VIA = ("auto", "logits-processor", "structured-outputs", "grammar")
CONSTRAINT_KIND = {
    "logits-processor": "permutation",
    "structured-outputs": "format",
    "grammar": "format",
}  # wrong key, URL or model: every request would fail


class APIError(RuntimeError):
    """A failed API request, with its HTTP ``status`` (``None`` when no HTTP
    response came) and the server's ``Retry-After`` delay in seconds, if any.
    """

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class OpenAISolver(Solver):
    """Chat completions over HTTP.

    ``max_new_tokens`` is sent as ``max_completion_tokens`` to api.openai.com and for
    reasoning models (``reasoning_effort`` set), else as ``max_tokens`` (what most
    self-hosted servers expect). The temperature is always sent (0 = greedy unless set),
    except to reasoning models, which reject it; a self-hosted server also gets every
    other sampling knob explicitly (``top_p`` 1, ``top_k`` 0, ``min_p`` 0, repeat penalty
    1 as ``repeat_penalty`` for llama.cpp and ``repetition_penalty`` for vLLM), because
    servers disagree on their defaults (llama.cpp's: temperature 0.8, repeat penalty 1.1).
    ``extra_body`` is merged into every request last.

    ``constrained``: the answer grammar goes with every request, as the server takes it
    (``constrain_via``): ``logits-processor`` (a ``vllm serve`` started with cello1's
    processor, :mod:`cello1.solvers.vllm_constrained`: strict format *and* a
    permutation), ``structured-outputs`` (any ``vllm serve``: a regex), ``grammar``
    (llama.cpp's server: GBNF) — the last two guarantee the strict format with every item
    a candidate but cannot forbid repeats, so the runner adds ``--repair``. ``auto``
    (default) asks the server's ``/models`` who it is: vLLM → ``structured-outputs``,
    anything else → ``grammar``. Retries 429, 5xx, time-outs, dropped connections and
    malformed or truncated responses with exponential backoff and full jitter, honouring
    ``Retry-After``; what still fails becomes that puzzle's recorded error. The API key is
    never sent over plain http to a non-local host unless ``allow_insecure_key``.
    """

    name = "openai"
    abilities = frozenset({Ability.STREAMING})

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        prompt_layout: str = DEFAULT_PROMPT_LAYOUT,
        n: int = 1,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        min_p: float | None = None,
        repeat_penalty: float | None = None,
        constrained: bool = False,
        constrain_via: str = "auto",
        concurrency: int = 4,
        reasoning_effort: str | None = None,
        timeout: float = 600.0,
        max_retries: int = 6,
        retry_base: float = 1.0,
        retry_max: float = 60.0,
        seed: int | None = None,
        batch_size: int | None = None,
        extra_body: dict[str, Any] | None = None,
        allow_insecure_key: bool = False,
        **unsupported: Any,
    ) -> None:
        reject_unsupported(self.name, unsupported)
        if not model:
            raise InputError("the 'openai' solver needs {model} (the model name the endpoint serves)", params=["model"])
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        self.api_key = os.environ.get(api_key_env)
        if not self.api_key and self.base_url == OPENAI_URL:
            raise InputError(
                f"no API key: set the environment variable {api_key_env} (or pass {{api_key_env}}=NAME)",
                params=["api_key_env"],
            )
        self.key_withheld = bool(self.api_key) and not allow_insecure_key and not key_safe_to_send(self.base_url)
        if self.key_withheld:
            print(
                f"warning: not sending the API key from ${api_key_env} to {self.base_url}: plain http to a "
                "non-local host lets anyone on the way read it (use https, or allow it with --allow-insecure-key)",
                file=sys.stderr,
            )
            self.api_key = None
        self.prompt_layout = check_prompt_layout(prompt_layout)
        self.n = int(n)
        self.sampling = resolve_sampling(self.n, temperature, top_p, top_k, min_p, repeat_penalty, seed)
        # only what the user set goes to api.openai.com (it rejects top_k, min_p, repeat_penalty)
        given = {"top_p": top_p, "top_k": top_k, "min_p": min_p, "repeat_penalty": repeat_penalty}
        self.sampling_set = {k for k, v in given.items() if v is not None}
        self.max_new_tokens = max_new_tokens
        if concurrency < 1:
            raise InputError(f"{{concurrency}} must be at least 1, not {concurrency}", params=["concurrency"])
        self.concurrency = int(concurrency)
        self.batch_size = int(batch_size or 4 * self.concurrency)
        self.reasoning_effort = reasoning_effort
        if int(max_retries) < 0:
            raise InputError(f"{{max_retries}} must be >= 0, not {max_retries}", params=["max_retries"])
        if not float(timeout) > 0:
            raise InputError(f"{{timeout}} must be a positive number of seconds, not {timeout}", params=["timeout"])
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        self.retry_base, self.retry_max = float(retry_base), float(retry_max)
        self.seed = seed
        self.extra_body = dict(extra_body or {})
        self.constrained = bool(constrained)
        # "auto" asks the server, so only when it is needed
        needed = self.constrained or constrain_via != "auto"
        self.constrain_via = self._resolve_constrain_via(constrain_via) if needed else None

    @property
    def temperature(self) -> float:
        """The sampling temperature (0 = greedy)."""
        return self.sampling.temperature

    def _resolve_constrain_via(self, via: str) -> str:
        if via not in CONSTRAIN_VIA:
            raise InputError(
                f"{{constrain_via}} must be one of {', '.join(CONSTRAIN_VIA)}, not {via!r}", params=["constrain_via"]
            )
        if via != "auto":
            return via
        return "structured-outputs" if self.server_owner() == "vllm" else "grammar"

    def server_owner(self) -> str | None:
        """``owned_by`` of the served model in ``GET /models`` (``"vllm"`` for vLLM), or
        ``None``; an unreachable server fails here, in one line, before any puzzle.
        """
        request = urllib.request.Request(self.base_url + "/models", headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=min(self.timeout, 30.0)) as resp:
                models = json.loads(resp.read().decode("utf-8")).get("data") or []
        except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError, AttributeError) as exc:
            raise InputError(
                f"{{constrained}} with {{constrain_via}}=auto: cannot ask {self.base_url}/models which server it is "
                f"({exc}); check {{base_url}} or set {{constrain_via}}",
                params=["constrained", "constrain_via", "base_url"],
            ) from None
        owners = [m.get("owned_by") for m in models if isinstance(m, dict)]
        return owners[0] if owners else None

    # ---- Solver interface ----------------------------------------------------------------
    def solve_batch(self, puzzles: list[Puzzle]) -> list[list[Completion]]:
        """All puzzles, ``concurrency`` requests at a time."""
        results: list[list[Completion]] = [[] for _ in puzzles]
        for index, completions in self.iter_solve(puzzles):
            results[index] = completions
        return results

    def iter_solve(self, puzzles: list[Puzzle]) -> Iterator[tuple[int, list[Completion]]]:
        """(index, completions) in the order requests finish, ``concurrency`` at a time."""
        if self.constrained:  # a budget too small for a grammar stops the run before any request
            for puzzle in puzzles:
                self.constraint_body(puzzle)
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="cello1-openai")
        futures = {pool.submit(self.request, p): i for i, p in enumerate(puzzles)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            # on Ctrl-C or a fatal error: queued requests never start, in-flight ones are dropped
            pool.shutdown(wait=False, cancel_futures=True)

    def settings(self) -> dict[str, Any]:
        """The base settings plus the endpoint, prompt mode and samples."""
        return {
            **super().settings(),
            "base_url": self.base_url,
            "prompt_layout": self.prompt_layout,
            "n": self.n,
            "temperature": self.temperature,
            "constrained": CONSTRAINT_KIND[self.constrain_via] if self.constrained else False,
            "constrain_via": self.constrain_via,
        }

    # ---- one puzzle ----------------------------------------------------------------------
    def request_body(self, puzzle: Puzzle) -> dict[str, Any]:
        """The JSON body of the chat-completions request for ``puzzle``."""
        body: dict[str, Any] = {"model": self.model, "messages": puzzle.messages(self.prompt_layout)}
        if self.n > 1:
            body["n"] = self.n
        if self.max_new_tokens is not None:
            reasoning = self.reasoning_effort is not None or self.base_url == OPENAI_URL
            body["max_completion_tokens" if reasoning else "max_tokens"] = int(self.max_new_tokens)
        body.update(self.sampling_body())
        for key in ("reasoning_effort", "seed"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        if self.constrained:
            body.update(self.constraint_body(puzzle))
        body.update(self.extra_body)
        return body

    def sampling_body(self) -> dict[str, Any]:
        """The sampling fields: all of them, explicitly, for a self-hosted server; for
        api.openai.com the temperature (not to reasoning models unless set) and what was set.
        """
        s = self.sampling
        full = {
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "min_p": s.min_p,
            "repeat_penalty": s.repeat_penalty,  # llama.cpp's server
            "repetition_penalty": s.repeat_penalty,  # vLLM's server
        }
        if self.base_url != OPENAI_URL:
            return full
        body = {k: v for k, v in full.items() if k in self.sampling_set and k != "repetition_penalty"}
        if self.reasoning_effort is None or s.temperature != 0:
            body["temperature"] = s.temperature
        return body

    def constraint_body(self, puzzle: Puzzle) -> dict[str, Any]:
        """The request fields that constrain ``puzzle``'s answer (see the class docstring)."""
        from cello1.solvers.constrained import answer_gbnf, answer_regex, grammar_think_chars

        if self.constrain_via is None:
            self.constrain_via = self._resolve_constrain_via("auto")
        if self.max_new_tokens is None:
            raise InputError(
                "{constrained} needs {max_new_tokens} (the answer must fit in it)", params=["max_new_tokens"]
            )
        if self.constrain_via == "logits-processor":
            from cello1.solvers.constrained import constrained_args

            return {"vllm_xargs": constrained_args(puzzle.candidates, puzzle.n, int(self.max_new_tokens), True)}
        chars = grammar_think_chars(puzzle.candidates, puzzle.n, int(self.max_new_tokens), open_think=True)
        if self.constrain_via == "structured-outputs":
            return {"structured_outputs": {"regex": answer_regex(puzzle.candidates, puzzle.n, chars)}}
        return {"grammar": answer_gbnf(puzzle.candidates, puzzle.n, chars)}

    def request(self, puzzle: Puzzle) -> list[Completion]:
        """The ``n`` completions of one puzzle from one request (retried); a failure
        that persists becomes an error completion.
        """
        start = time.perf_counter()
        try:
            response = self._post_with_retries(self.request_body(puzzle))
            return self._completions(response, time.perf_counter() - start)
        except APIError as exc:
            if exc.status in FATAL_STATUS:
                hint = " (the key was not sent: plain http, see --allow-insecure-key)" if self.key_withheld else ""
                raise InputError(
                    f"{self.base_url}: HTTP {exc.status} ({exc}); "
                    "check {base_url}, {model} and the API key variable" + hint,
                    params=["base_url", "model"],
                ) from None
            message = str(exc)
        except Exception as exc:  # one odd response must not end the whole run
            message = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        error = message.splitlines()[0] if message else "request failed"
        return [Completion(text="", error=error, info={"seconds": seconds}) for _ in range(self.n)]

    def _completions(self, response: dict[str, Any], seconds: float) -> list[Completion]:
        choices = sorted(response["choices"], key=lambda c: c.get("index") or 0)
        usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
        prompt_tokens = usage.get("prompt_tokens")
        total = usage.get("completion_tokens")
        per_sample = None if total is None else round(total / max(len(choices), 1))
        completions = []
        for sample in range(self.n):
            if sample >= len(choices):
                error = f"the server returned {len(choices)} of {self.n} choices"
                completions.append(Completion(text="", error=error, info={"seconds": seconds}))
                continue
            message = choices[sample].get("message") or {}
            content = message.get("content") if isinstance(message, dict) else None
            if content is not None and not isinstance(content, str):
                error = f"malformed response: the message content is {type(content).__name__}, not text"
                completions.append(Completion(text="", error=error, info={"seconds": seconds}))
                continue
            info = {"seconds": seconds, "finish_reason": choices[sample].get("finish_reason")}
            if message.get("reasoning_content"):
                info["reasoning_content"] = message["reasoning_content"]
            completions.append(
                Completion(
                    text=content or "",
                    prompt_tokens=prompt_tokens,
                    completion_tokens=per_sample,
                    info=info,
                )
            )
        return completions

    # ---- HTTP ----------------------------------------------------------------------------
    def _post_with_retries(self, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(self.max_retries + 1):
            try:
                return self._post(body)
            except APIError as exc:
                if exc.status is not None and exc.status not in RETRY_STATUS or attempt == self.max_retries:
                    raise
                time.sleep(self._backoff(attempt, exc.retry_after))
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_max)
        return random.uniform(0, min(self.retry_max, self.retry_base * 2**attempt))  # full jitter

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = self._headers()
        request = urllib.request.Request(
            self.base_url + "/chat/completions", data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                payload = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc)
            raise APIError(f"HTTP {exc.code}: {detail}", exc.code, _retry_after(exc.headers)) from None
        except TimeoutError as exc:
            raise APIError(f"timed out after {self.timeout:g}s ({exc})") from None
        except urllib.error.URLError as exc:
            raise APIError(f"cannot reach {self.base_url}: {exc.reason}") from None
        except (http.client.HTTPException, OSError) as exc:  # cut off, reset, bad status line …
            raise APIError(f"broken response ({type(exc).__name__}: {exc})") from None
        except ValueError as exc:  # not JSON, not UTF-8
            raise APIError(f"malformed response ({type(exc).__name__}: {str(exc)[:120]})") from None
        return _checked_payload(payload)


def _checked_payload(payload: Any) -> dict[str, Any]:
    """A chat-completions response: an object whose ``choices`` are objects (else a
    retryable :class:`APIError`).
    """
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise APIError(f"malformed response: expected a chat completion with 'choices', got {str(payload)[:120]}")
    for choice in choices:
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if message is not None and not isinstance(message, dict) or not isinstance(content, (str, type(None))):
            raise APIError(f"malformed response: a choice's message is not text ({str(choice)[:120]})")
    return payload


def key_safe_to_send(base_url: str) -> bool:
    """Whether an API key may go to ``base_url``: https, or plain http to this machine."""
    parsed = urllib.parse.urlsplit(base_url)
    if parsed.scheme == "https":
        return True
    host = (parsed.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(exc.read().decode("utf-8"))
        error = payload.get("error", payload)
        return str(error.get("message", error) if isinstance(error, dict) else error)[:300]
    except Exception:
        return exc.reason or "error"


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
