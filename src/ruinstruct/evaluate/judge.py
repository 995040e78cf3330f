"""MT-Bench judges: single-answer grading on a 1-10 scale, as FastChat's llm_judge does it.

Prompts. A judge prompt set is a JSONL file of FastChat's judge prompts ({name, type,
system_prompt, prompt_template, output_format, ...}); only the four single-answer prompts are
used: ``single-v1`` (turn 1), ``single-v1-multi-turn`` (turn 2, the whole conversation shown),
and their reference-guided twins ``single-math-v1`` / ``single-math-v1-multi-turn`` for the
categories math, reasoning and coding. The English set ships with the package
(resources/mt_bench/judge_prompts_en.jsonl, FastChat's texts); a Russian set is a path the user
gives.

Two judges, one interface (``judge(requests) -> list[Verdict]``, in order):

- :class:`ApiJudge`: any OpenAI-compatible chat-completions endpoint (GPT-4 by default),
  temperature 0, plain HTTP from the standard library. The rating is parsed from ``[[N]]``
  (FastChat's backup form ``[N]`` too); a reply without a rating in 1..10 is asked once more,
  then recorded as -1. 429, 5xx, timeouts, dropped connections and malformed bodies are retried
  with exponential backoff (``Retry-After`` honoured), a bounded number of times; then
  :class:`JudgeError`. 401/403/404 fail at once (a wrong key, model or URL is no passing
  trouble); a 400 for one prompt (say, too long for the judge) becomes -1 for that row. Every
  verdict is cached in a JSONL file keyed by judge model + prompt name + the full system and user
  prompt (so question, answer and reference), so a rerun pays nothing twice. The API key is only
  ever put in the Authorization header: it is in no repr, log line, exception, judgment or file
  (anything the server echoes back is redacted).
- :class:`LocalJudge`: any causal LM folder, offline. The prompt is the judge prompt rendered
  through the judge's chat template (plain ``system\\n\\nuser\\n\\n`` when it has none), followed
  by the answer prefix ``Rating: [[`` (the format the prompt asks for), so the next token is the
  rating. The rating is the expected value of 1..10 under the model's next-token distribution,
  renormalised over the ten ratings. Tokens: "1".."9" must each be one token of the vocabulary
  (looked up as vocabulary entries and checked to decode to the digit). "10" is one token when
  the vocabulary has it; otherwise it is the two tokens "1" "0", and then
  ``p(10) = p("1") * p("0" | prompt + "1")`` and ``p(1) = p("1") - p(10)`` (a "1" not followed by
  "0"), both read from one forward pass over prompt + "1". A prompt longer than the judge's
  context is recorded as -1 with the reason.

Heavy imports (torch, transformers) happen inside the functions.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import string
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import UserError

log = logging.getLogger(__name__)

#: categories graded against a reference answer (FastChat's NEED_REF_CATS)
NEED_REF_CATEGORIES: tuple[str, ...] = ("math", "reasoning", "coding")

#: (reference-guided, second turn) -> FastChat's single-answer prompt name
PROMPT_NAMES: dict[tuple[bool, bool], str] = {
    (False, False): "single-v1",
    (True, False): "single-math-v1",
    (False, True): "single-v1-multi-turn",
    (True, True): "single-math-v1-multi-turn",
}

DEFAULT_API_MODEL = "gpt-4"
DEFAULT_API_BASE = "https://api.openai.com/v1"
#: environment variables read for the key and the base URL, first set wins
KEY_ENV: tuple[str, ...] = ("RUINSTRUCT_JUDGE_API_KEY", "OPENAI_API_KEY")
BASE_ENV: tuple[str, ...] = ("RUINSTRUCT_JUDGE_API_BASE", "OPENAI_BASE_URL")

#: what the local judge's answer starts with: the prompt's own example, "Rating: [[5]]"
LOCAL_PREFILL = "Rating: [["

_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


class JudgeError(UserError):
    """The judge cannot be reached or refuses (after the retries): one line for the CLI."""


class JudgeRequest(NamedTuple):
    """One judgment to make: the prompts are complete, so they alone decide the verdict."""

    question_id: Any
    turn: int
    prompt_name: str
    system_prompt: str
    user_prompt: str


class Verdict(NamedTuple):
    score: float  # 1..10, or -1 when no rating could be had
    judgment: str  # the judge's text (API) or how the rating was computed (local)


# ---------------------------------------------------------------------------------------------
# prompts


def english_prompts_path() -> Path:
    """FastChat's English single-answer judge prompts, shipped as package data."""
    return Path(__file__).resolve().parents[1] / "resources" / "mt_bench" / "judge_prompts_en.jsonl"


def load_judge_prompts(path: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """The single-answer prompts of a judge prompt file (FastChat's format), by name. Every one
    of PROMPT_NAMES must be there, with a system_prompt, a prompt_template whose fields are the
    ones FastChat fills, and output_format "[[rating]]"; anything else is an error naming the
    file and the prompt."""
    from ..io import iter_jsonl_lines

    path = Path(path) if path is not None else english_prompts_path()
    if not path.is_file():
        raise UserError(f"{path}: judge prompt file not found")
    prompts: dict[str, dict[str, Any]] = {}
    for line in iter_jsonl_lines(path):
        if line.error or not isinstance(line.obj, dict):
            raise UserError(f"{path}:{line.lineno}: {line.error or 'not a JSON object'}")
        name = line.obj.get("name")
        if isinstance(name, str):
            prompts[name] = line.obj
    for (ref, multi), name in PROMPT_NAMES.items():
        p = prompts.get(name)
        if p is None:
            raise UserError(f"{path}: no judge prompt named {name!r} (needs {', '.join(PROMPT_NAMES.values())})")
        for field in ("system_prompt", "prompt_template"):
            if not isinstance(p.get(field), str):
                raise UserError(f"{path}: prompt {name!r}: {field} must be a string")
        if p.get("output_format", "[[rating]]") != "[[rating]]":
            raise UserError(f"{path}: prompt {name!r}: output_format {p['output_format']!r}, expected '[[rating]]'")
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(p["prompt_template"]) if f is not None}
        except ValueError as e:
            raise UserError(f"{path}: prompt {name!r}: prompt_template is not a format string ({e})") from None
        allowed = _fields(ref, multi)
        if not fields <= allowed:
            raise UserError(f"{path}: prompt {name!r}: unknown fields {sorted(fields - allowed)} in prompt_template")
    return {name: prompts[name] for name in PROMPT_NAMES.values()}


def _fields(ref: bool, multi: bool) -> set[str]:
    out = {"question_1", "question_2", "answer_1", "answer_2"} if multi else {"question", "answer"}
    if ref:
        out |= {"ref_answer_1", "ref_answer_2"}
    return out


def build_request(question: dict[str, Any], answer: Sequence[str], prompts: dict[str, dict[str, Any]],
                  *, turn: int, reference: Sequence[str] | None = None) -> JudgeRequest:
    """The judge request for `turn` (1 or 2) of one answered question, filled as FastChat's
    run_judge_single fills it: turn 2 shows the whole conversation (both questions, both
    answers), and math/reasoning/coding questions get the reference answers."""
    ref = question["category"] in NEED_REF_CATEGORIES
    if ref and not reference:
        raise UserError(f"question {question['question_id']} ({question['category']}): no reference answer")
    prompt = prompts[PROMPT_NAMES[(ref, turn == 2)]]
    kw: dict[str, str] = {}
    if ref:
        kw["ref_answer_1"] = reference[0]  # type: ignore[index]
        kw["ref_answer_2"] = reference[1] if len(reference) > 1 else ""  # type: ignore[arg-type]
    if turn == 2:
        user = prompt["prompt_template"].format(question_1=question["turns"][0], question_2=question["turns"][1],
                                                answer_1=answer[0], answer_2=answer[1], **kw)
    else:
        user = prompt["prompt_template"].format(question=question["turns"][0], answer=answer[0], **kw)
    return JudgeRequest(question["question_id"], turn, prompt["name"], prompt["system_prompt"], user)


def parse_rating(text: str) -> float | None:
    """The rating in a judge's reply: ``[[N]]``, else FastChat's backup ``[N]``; None when there is
    none or it lies outside 1..10 (a "[0]" in quoted code is no rating)."""
    for pattern in (_RATING, _RATING_BACKUP):
        for m in pattern.finditer(text):
            value = float(m.group(1))
            if 1 <= value <= 10:
                return int(value) if value.is_integer() else value
    return None


# ---------------------------------------------------------------------------------------------
# cache


def cache_key(judge_model: str, request: JudgeRequest) -> str:
    from ..schema import content_hash

    return content_hash([judge_model, request.prompt_name, request.system_prompt, request.user_prompt])


class JudgmentCache:
    """Verdicts by cache_key, in an append-only JSONL file: each verdict is one line, flushed to
    disk when it arrives, so a run killed halfway keeps what it paid for. A torn last line (the
    kill came mid-write) is skipped on reading."""

    def __init__(self, path: str | os.PathLike[str]):
        from ..io import iter_jsonl_lines

        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, Verdict] = {}
        if self.path.is_file():
            for line in iter_jsonl_lines(self.path):
                obj = line.obj
                if isinstance(obj, dict) and isinstance(obj.get("key"), str) and "score" in obj:
                    self._entries[obj["key"]] = Verdict(obj["score"], obj.get("judgment", ""))

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Verdict | None:
        return self._entries.get(key)

    def put(self, key: str, verdict: Verdict, **extra: Any) -> None:
        from ..io import dumps_line

        line = dumps_line({"key": key, "score": verdict.score, "judgment": verdict.judgment, **extra})
        with self._lock:
            self._entries[key] = verdict
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------------
# API judge


class _Retry(Exception):
    """A failed attempt worth another (429, 5xx, timeout, dropped connection, malformed body)."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


class _Secret:
    """A string that is never shown: its repr is '***' and it refuses to be pickled."""

    __slots__ = ("value",)

    def __init__(self, value: str):
        self.value = value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a secret is not serialisable")


def _env(names: Sequence[str]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


class ApiJudge:
    """GPT-4 (or any model) behind an OpenAI-compatible /chat/completions endpoint.

    `api_key`/`api_base` default to the environment (KEY_ENV, BASE_ENV), then to OpenAI's URL.
    `max_retries` more attempts follow a failed one, `backoff * 2**i` seconds apart (capped at
    `max_backoff`, or the server's Retry-After). `parallel` requests run at once."""

    def __init__(self, model: str = DEFAULT_API_MODEL, *, api_base: str | None = None, api_key: str | None = None,
                 cache: str | os.PathLike[str] | None = None, timeout: float = 120.0, max_retries: int = 5,
                 backoff: float = 2.0, max_backoff: float = 60.0, max_tokens: int = 2048, parallel: int = 1,
                 sleep: Callable[[float], None] = time.sleep):
        self.model = model
        self.name = model
        self.api_base = (api_base or _env(BASE_ENV) or DEFAULT_API_BASE).rstrip("/")
        key = api_key or _env(KEY_ENV[:1])
        # OpenAI's key goes to OpenAI's endpoint (or the one OPENAI_BASE_URL names) only: a profile
        # or --api-base pointing elsewhere must not receive it unasked
        openai_bases = {DEFAULT_API_BASE, (os.environ.get("OPENAI_BASE_URL") or DEFAULT_API_BASE).rstrip("/")}
        if not key and self.api_base in openai_bases:
            key = _env(KEY_ENV[1:])
        if not key:
            where = " or ".join(KEY_ENV) if self.api_base in openai_bases else KEY_ENV[0]
            raise UserError(f"api judge {model}: no API key for {self.api_base} (set {where}, or pass one)")
        if any(c.isspace() or not c.isprintable() for c in key):
            # http.client would put the whole header, key included, in its error message
            raise UserError(f"api judge {model}: the API key contains whitespace or control characters")
        self.__key = _Secret(key)  # shows as '***' in reprs, vars() and logs; only _post reads it
        self.cache = JudgmentCache(cache) if cache is not None else None
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_tokens = max_tokens
        self.parallel = max(1, parallel)
        self._sleep = sleep
        self.calls = 0  # HTTP requests sent (tests: a cached rerun sends none)

    def __repr__(self) -> str:
        return f"ApiJudge(model={self.model!r}, api_base={self.api_base!r})"

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("ApiJudge holds an API key and is not serialisable")

    @property
    def url(self) -> str:
        return f"{self.api_base}/chat/completions"

    def redact(self, text: str) -> str:
        return text.replace(self.__key.value, "***")

    def judge(self, requests: Sequence[JudgeRequest]) -> list[Verdict]:
        if self.parallel == 1 or len(requests) < 2:
            return [self.judge_one(r) for r in requests]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.parallel) as pool:
            return list(pool.map(self.judge_one, requests))

    def judge_one(self, request: JudgeRequest) -> Verdict:
        key = cache_key(self.model, request)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return hit
        verdict = None
        for _ in range(2):  # a reply without a rating is asked once more
            try:
                text = self._complete(request.system_prompt, request.user_prompt)
            except _BadRequest as e:
                # that prompt only (say, longer than the judge's context): excluded, not cached
                log.warning("judge %s: question %s turn %s: %s", self.model, request.question_id, request.turn, e)
                return Verdict(-1, f"$ERROR$ {e}")
            rating = parse_rating(text)
            verdict = Verdict(rating if rating is not None else -1, text)
            if rating is not None:
                break
            log.info("judge %s: no [[rating]] in the reply for question %s turn %s", self.model,
                     request.question_id, request.turn)
        assert verdict is not None
        if self.cache is not None:
            self.cache.put(key, verdict, judge=self.model, prompt=request.prompt_name,
                           question_id=request.question_id, turn=request.turn)
        return verdict

    def _complete(self, system: str, user: str) -> str:
        body = json.dumps({
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0,
            "max_tokens": self.max_tokens,
            "n": 1,
        }).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                return self._post(body)
            except _Retry as e:
                last = str(e)
                if attempt == self.max_retries:
                    break
                wait = min(self.max_backoff, e.wait if e.wait is not None else self.backoff * 2**attempt)
                wait *= 1 + 0.1 * random.random()  # jitter: parallel callers do not retry in step
                log.warning("judge %s: %s; retry %d of %d in %.1f s", self.model, last, attempt + 1,
                            self.max_retries, wait)
                self._sleep(wait)
        raise JudgeError(f"api judge {self.model} at {self.url}: {last} (gave up after {self.max_retries + 1} attempts)")

    def _post(self, body: bytes) -> str:
        import http.client
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.__key.value}"})
        self.calls += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = self._snippet(e.read() if e.fp is not None else b"")
            status = e.code
            retry_after = _retry_after(e.headers.get("Retry-After") if e.headers else None)
            e.close()
            if status == 429 or status >= 500 or status == 408:
                raise _Retry(f"HTTP {status}{detail}", retry_after) from None
            if status == 400:
                raise _BadRequest(f"HTTP 400{detail}") from None
            raise JudgeError(f"api judge {self.model} at {self.url}: HTTP {status}{detail}") from None
        except TimeoutError:
            raise _Retry(f"no answer within {self.timeout:g} s") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, TimeoutError):
                raise _Retry(f"no answer within {self.timeout:g} s") from None
            if isinstance(reason, OSError | str):
                raise _Retry(f"connection failed ({self.redact(str(reason))})") from None
            raise
        except (http.client.HTTPException, ConnectionError) as e:
            raise _Retry(f"connection broken ({type(e).__name__})") from None
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError(type(content).__name__)
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retry(f"malformed response body{self._snippet(raw)}") from None
        return self.redact(content)

    def _snippet(self, raw: bytes) -> str:
        text = " ".join(raw.decode("utf-8", "replace").split())
        if not text:
            return ""
        text = self.redact(text)
        return f": {text[:200]}" + ("…" if len(text) > 200 else "")


class _BadRequest(Exception):
    pass


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: backoff instead


# ---------------------------------------------------------------------------------------------
# local judge


class RatingTokens(NamedTuple):
    digits: list[int]  # ids of "1".."9"
    ten: int | None  # id of "10" when it is one token
    zero: int | None  # id of "0" when "10" is "1" "0"


def rating_tokens(tokenizer: Any) -> RatingTokens:
    """The token ids of the ratings (module docstring: "10" is one token or "1" "0")."""
    vocab = tokenizer.get_vocab()

    def single(text: str) -> int | None:
        tid = vocab.get(text)
        if tid is None:
            return None
        return tid if tokenizer.decode([tid]).strip() == text else None

    digits = [single(str(k)) for k in range(1, 10)]
    if any(d is None for d in digits):
        missing = [str(k) for k, d in zip(range(1, 10), digits, strict=True) if d is None]
        raise UserError(f"local judge: the tokenizer has no single token for the digit(s) {', '.join(missing)}")
    ten = single("10")
    zero = None if ten is not None else single("0")
    if ten is None and zero is None:
        raise UserError("local judge: the tokenizer has neither a token '10' nor a token '0'")
    return RatingTokens(digits, ten, zero)  # type: ignore[arg-type]


def rating_distribution(logits_prompt: Any, logits_after_one: Any, tokens: RatingTokens) -> list[float]:
    """p(1..10), renormalised over the ten ratings, from the next-token logits after the prompt
    and after prompt + "1" (the latter only used when "10" is two tokens). float64."""
    import torch

    p = torch.softmax(logits_prompt.double(), dim=-1)
    probs = [float(p[t]) for t in tokens.digits]
    if tokens.ten is not None:
        p10 = float(p[tokens.ten])
    else:
        p0 = float(torch.softmax(logits_after_one.double(), dim=-1)[tokens.zero])
        p10 = probs[0] * p0
        probs[0] -= p10
    probs.append(p10)
    total = sum(probs)
    return [x / total for x in probs]


def expected_rating(dist: Sequence[float]) -> float:
    return sum(k * p for k, p in zip(range(1, 11), dist, strict=True))


class LocalJudge:
    """A causal LM from disk as the judge (module docstring). The model loads on the first
    judgment, so building the judge costs nothing while the answers are generated."""

    def __init__(self, model: str | os.PathLike[str], *, batch_size: int = 4, name: str | None = None):
        self.model_path = str(model)
        self.name = name or f"local-{Path(self.model_path).name}"
        self.batch_size = max(1, batch_size)
        self._net = None
        self._tok = None

    def __repr__(self) -> str:
        return f"LocalJudge({self.model_path!r})"

    def load(self) -> tuple[Any, Any]:
        if self._net is None:
            from .load import load_for_eval

            self._net, self._tok = load_for_eval(self.model_path, padding_side="left")
        return self._net, self._tok

    def release(self) -> None:
        self._net = self._tok = None

    def render(self, request: JudgeRequest) -> list[int]:
        """Token ids of the judge prompt followed by LOCAL_PREFILL."""
        _, tok = self.load()
        if getattr(tok, "chat_template", None):
            msgs = [{"role": "system", "content": request.system_prompt},
                    {"role": "user", "content": request.user_prompt}]
            try:
                text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            except Exception:  # a template without a system role: the instruction goes first in the user turn
                msgs = [{"role": "user", "content": f"{request.system_prompt}\n\n{request.user_prompt}"}]
                text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            return tok(text + LOCAL_PREFILL, add_special_tokens=False)["input_ids"]
        text = f"{request.system_prompt}\n\n{request.user_prompt}\n\n{LOCAL_PREFILL}"
        return tok(text)["input_ids"]

    def context(self) -> int:
        from .load import context_limit

        return context_limit(*self.load()) or 2048

    def distributions(self, requests: Sequence[JudgeRequest]) -> list[list[float] | str]:
        """p(1..10) per request, or the reason there is none (a prompt too long)."""
        import torch

        from .load import pad_batch

        net, tok = self.load()
        tokens = rating_tokens(tok)
        ctx = self.context()
        out: list[list[float] | str] = [""] * len(requests)
        seqs = []
        for i, r in enumerate(requests):
            ids = self.render(r) + [tokens.digits[0]]
            if len(ids) > ctx:
                out[i] = f"prompt of {len(ids)} tokens exceeds the judge's context of {ctx}"
            else:
                seqs.append((i, ids))
        seqs.sort(key=lambda s: len(s[1]))  # like lengths together: less padding
        pad = tok.pad_token_id
        for start in range(0, len(seqs), self.batch_size):
            chunk = seqs[start:start + self.batch_size]
            input_ids, mask = pad_batch([ids for _, ids in chunk], pad)
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.no_grad():
                logits = net(input_ids=input_ids.to(net.device), attention_mask=mask.to(net.device),
                             position_ids=position_ids.to(net.device)).logits
            for row, (i, _) in enumerate(chunk):
                out[i] = rating_distribution(logits[row, -2].float().cpu(), logits[row, -1].float().cpu(), tokens)
        return out

    def judge(self, requests: Sequence[JudgeRequest]) -> list[Verdict]:
        verdicts = []
        for dist in self.distributions(requests):
            if isinstance(dist, str):
                verdicts.append(Verdict(-1, f"$ERROR$ {dist}"))
                continue
            e = expected_rating(dist)
            shown = ", ".join(f"{k}: {p:.4f}" for k, p in zip(range(1, 11), dist, strict=True))
            verdicts.append(Verdict(e, f"Expected rating {e:.4f} over the judge's next-token probabilities "
                                       f"after '{LOCAL_PREFILL}' ({shown}). Rating: [[{e:.2f}]]"))
        return verdicts


# ---------------------------------------------------------------------------------------------


def make_judge(spec: str, *, api_base: str | None = None, api_key: str | None = None,
               cache: str | os.PathLike[str] | None = None, **kw: Any) -> ApiJudge | LocalJudge:
    """`local:<model dir>` or `api:<model name>` (`api:` alone: GPT-4)."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in ("local", "api"):
        raise UserError(f"--judge {spec}: expected local:<model dir> or api:<model name>")
    if kind == "local":
        if not rest:
            raise UserError(f"--judge {spec}: local: needs a model folder")
        if not Path(rest).is_dir():
            raise UserError(f"--judge {spec}: {rest}: model folder not found")
        return LocalJudge(rest, **{k: v for k, v in kw.items() if k in ("batch_size", "name")})
    allowed = ("timeout", "max_retries", "backoff", "max_backoff", "max_tokens", "parallel", "sleep")
    return ApiJudge(rest or DEFAULT_API_MODEL, api_base=api_base, api_key=api_key, cache=cache,
                    **{k: v for k, v in kw.items() if k in allowed})
