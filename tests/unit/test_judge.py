"""MT-Bench judges: FastChat's prompts filled as FastChat fills them, the rating parsed as FastChat
parses it; the API judge against a local chat-completions server (429, 500, malformed bodies,
missing ratings, timeouts, the cache, a key that never shows); the local judge's expected rating
against an independent computation from the logits."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ruinstruct.errors import UserError
from ruinstruct.evaluate.judge import (
    LOCAL_PREFILL,
    PROMPT_NAMES,
    ApiJudge,
    JudgeError,
    JudgeRequest,
    LocalJudge,
    RatingTokens,
    Verdict,
    build_request,
    english_prompts_path,
    expected_rating,
    load_judge_prompts,
    make_judge,
    parse_rating,
    rating_distribution,
    rating_tokens,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "mt_bench"
KEY = "sk-test-PLANTED-0123456789abcdef"


# ---------------------------------------------------------------------------------------------
# a local OpenAI-compatible server


def reply(content: str) -> tuple[int, bytes, dict, float]:
    body = {"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
    return 200, json.dumps(body).encode(), {}, 0.0


class ChatServer:
    """Serves POST /v1/chat/completions from a script of (status, body, headers, delay); when the
    script runs out it answers `default`. `requests` records (headers, json body) of each call;
    a body of b"ECHO" answers with the request's own headers (a server that leaks them back)."""

    def __init__(self, default=None):
        self.script: list[tuple[int, bytes, dict, float]] = []
        self.default = default or reply("Fine. Rating: [[6]]")
        self.requests: list[tuple[dict, dict]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append((dict(self.headers), body))
                status, payload, headers, delay = owner.script.pop(0) if owner.script else owner.default
                if delay:
                    time.sleep(delay)
                if payload == b"ECHO":
                    payload = json.dumps({"error": {"message": f"Incorrect API key: {self.headers['Authorization']}"}}).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with ChatServer() as s:
        yield s


def api_judge(server, tmp_path=None, **kw):
    sleeps: list[float] = []
    opts = {"api_key": KEY, "backoff": 0.01, "max_retries": 3, "timeout": 5.0, "sleep": sleeps.append, **kw}
    judge = ApiJudge("gpt-4", api_base=server.base, cache=(tmp_path / "cache.jsonl") if tmp_path else None, **opts)
    judge.sleeps = sleeps
    return judge


REQ = JudgeRequest(1, 1, "single-v1", "You are a helpful assistant.", "[Question]\nq\n\n[Answer]\na")


# ---------------------------------------------------------------------------------------------
# prompts and parsing


def test_english_prompts_are_fastchats_four_single_prompts():
    prompts = load_judge_prompts()
    assert list(prompts) == list(PROMPT_NAMES.values())
    assert prompts["single-v1"]["system_prompt"] == "You are a helpful assistant."
    assert "{ref_answer_1}" in prompts["single-math-v1"]["prompt_template"]
    assert "{ref_answer_2}" in prompts["single-math-v1-multi-turn"]["prompt_template"]
    assert all(p["output_format"] == "[[rating]]" and p["type"] == "single" for p in prompts.values())
    assert english_prompts_path().is_file()


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared/data is absent")
def test_real_prompt_files_load_and_match_the_shipped_english_ones():
    ours = load_judge_prompts()
    upstream = load_judge_prompts(SHARED / "judge_prompts.jsonl")
    assert ours == upstream
    ru = load_judge_prompts(SHARED / "judge_prompts_ru_dmitrymailk.jsonl")
    assert set(ru) == set(PROMPT_NAMES.values())


def test_bad_prompt_files_are_one_error_naming_file_and_prompt(tmp_path):
    lines = [json.loads(s) for s in english_prompts_path().read_text().splitlines()]
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps(p) for p in lines[:3]))
    with pytest.raises(UserError, match=r"p\.jsonl: no judge prompt named 'single-math-v1-multi-turn'"):
        load_judge_prompts(f)
    lines[0]["prompt_template"] += " {answr}"
    f.write_text("\n".join(json.dumps(p) for p in lines))
    with pytest.raises(UserError, match=r"prompt 'single-v1': unknown fields \['answr'\]"):
        load_judge_prompts(f)
    with pytest.raises(UserError, match="judge prompt file not found"):
        load_judge_prompts(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("text,want", [
    ("Good answer. Rating: [[7]]", 7), ("Rating: [[8.5]]", 8.5), ("Rating: [9]", 9),
    ("score [[10]] and later [3]", 10), ("no rating here", None), ("Rating: [[0]]", None),
    ("list[0] is used; Rating: [[4]]", 4), ("[[11]] then [[2]]", 2),
])
def test_parse_rating(text, want):
    assert parse_rating(text) == want


def test_second_turn_request_shows_the_whole_conversation_and_references():
    prompts = load_judge_prompts()
    q = {"question_id": 7, "category": "math", "turns": ["Q-ONE", "Q-TWO"]}
    r1 = build_request(q, ["A-ONE", "A-TWO"], prompts, turn=1, reference=["R-ONE", "R-TWO"])
    r2 = build_request(q, ["A-ONE", "A-TWO"], prompts, turn=2, reference=["R-ONE", "R-TWO"])
    assert (r1.prompt_name, r2.prompt_name) == ("single-math-v1", "single-math-v1-multi-turn")
    assert all(s in r1.user_prompt for s in ("Q-ONE", "A-ONE", "R-ONE"))
    assert not any(s in r1.user_prompt for s in ("Q-TWO", "A-TWO", "R-TWO"))
    for s in ("Q-ONE", "A-ONE", "Q-TWO", "A-TWO", "R-ONE", "R-TWO"):
        assert s in r2.user_prompt
    assert r2.user_prompt.index("Q-ONE") < r2.user_prompt.index("R-ONE") < r2.user_prompt.index("Q-TWO")
    w = build_request({**q, "category": "writing"}, ["A-ONE", "A-TWO"], prompts, turn=2)
    assert w.prompt_name == "single-v1-multi-turn" and w.system_prompt == prompts["single-v1-multi-turn"]["system_prompt"]
    with pytest.raises(UserError, match=r"question 7 \(math\): no reference answer"):
        build_request(q, ["a", "b"], prompts, turn=1)


# ---------------------------------------------------------------------------------------------
# API judge


def test_api_judge_sends_a_chat_completion_and_parses_the_rating(server):
    judge = api_judge(server)
    assert judge.judge([REQ]) == [Verdict(6, "Fine. Rating: [[6]]")]
    headers, body = server.requests[0]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert body["model"] == "gpt-4" and body["temperature"] == 0 and body["n"] == 1
    assert body["messages"] == [{"role": "system", "content": REQ.system_prompt},
                                {"role": "user", "content": REQ.user_prompt}]


def test_api_judge_retries_429_500_malformed_and_timeouts_with_backoff(server):
    server.script = [
        (429, b'{"error": "slow down"}', {"Retry-After": "0.05"}, 0.0),
        (500, b"oops", {}, 0.0),
        (200, b"{not json", {}, 0.0),
        (200, b'{"choices": []}', {}, 0.0),
        (200, b"", {}, 1.0),  # slower than the client's timeout
        reply("ok [[9]]"),
    ]
    judge = api_judge(server, max_retries=5, timeout=0.3)
    assert judge.judge([REQ]) == [Verdict(9, "ok [[9]]")]
    assert judge.calls == len(server.requests) == 6
    assert len(judge.sleeps) == 5
    assert 0.05 <= judge.sleeps[0] <= 0.06  # Retry-After honoured
    assert 0.02 <= judge.sleeps[1] <= 0.023 and 0.04 <= judge.sleeps[2] <= 0.045  # backoff doubles


def test_api_judge_gives_up_after_bounded_retries_in_one_line(server):
    server.default = (503, b"down", {}, 0.0)
    judge = api_judge(server, max_retries=2)
    with pytest.raises(JudgeError) as e:
        judge.judge([REQ])
    assert judge.calls == 3 and len(judge.sleeps) == 2
    assert "HTTP 503: down (gave up after 3 attempts)" in str(e.value) and "\n" not in str(e.value)


def test_missing_rating_is_asked_once_more_then_minus_one(server, tmp_path):
    server.script = [reply("no rating"), reply("still none")]
    judge = api_judge(server, tmp_path)
    assert judge.judge([REQ]) == [Verdict(-1, "still none")]
    assert judge.calls == 2
    server.script = [reply("forgot"), reply("now [[3]]")]
    other = REQ._replace(user_prompt="another answer")
    assert judge.judge([other]) == [Verdict(3, "now [[3]]")]
    assert judge.calls == 4


def test_cache_means_a_rerun_makes_no_http_call(server, tmp_path):
    server.script = [reply("a [[2]]"), reply("b [[8]]"), reply("none"), reply("none")]
    reqs = [REQ, REQ._replace(question_id=2, user_prompt="x"), REQ._replace(question_id=3, user_prompt="y")]
    first = api_judge(server, tmp_path).judge(reqs)
    assert [v.score for v in first] == [2, 8, -1] and len(server.requests) == 4  # the unrated one asked twice
    again = api_judge(server, tmp_path)
    assert again.judge(reqs) == first and again.calls == 0 and len(server.requests) == 4
    # the key is judge model + prompt + content: a changed answer or another judge model is asked
    again.judge([REQ._replace(user_prompt="changed")])
    assert again.calls == 1
    other_model = ApiJudge("gpt-4o", api_base=server.base, api_key=KEY, cache=tmp_path / "cache.jsonl")
    other_model.judge([REQ])
    assert other_model.calls == 1 and server.requests[-1][1]["model"] == "gpt-4o"


def test_cache_survives_a_torn_last_line(server, tmp_path):
    api_judge(server, tmp_path).judge([REQ])
    with open(tmp_path / "cache.jsonl", "a") as f:
        f.write('{"key": "abc", "sco')  # killed mid-write
    judge = api_judge(server, tmp_path)
    assert judge.judge([REQ]) == [Verdict(6, "Fine. Rating: [[6]]")] and judge.calls == 0


def test_bad_request_is_minus_one_and_not_cached(server, tmp_path):
    server.script = [(400, b'{"error": "context length exceeded"}', {}, 0.0)]
    judge = api_judge(server, tmp_path)
    [v] = judge.judge([REQ])
    assert v.score == -1 and "HTTP 400" in v.judgment
    assert judge.judge([REQ]) == [Verdict(6, "Fine. Rating: [[6]]")] and judge.calls == 2


def test_the_key_never_shows(server, tmp_path, caplog, capsys, monkeypatch):
    """Planted in the environment; a server echoes the request headers back in its errors."""
    monkeypatch.setenv("RUINSTRUCT_JUDGE_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    server.script = [(500, b"ECHO", {}, 0.0), (200, json.dumps({"choices": [{"message": {
        "content": f"I saw Bearer {KEY}. Rating: [[5]]"}}]}).encode(), {}, 0.0)]
    judge = ApiJudge("gpt-4", api_base=server.base, cache=tmp_path / "c.jsonl", backoff=0.01)
    [v] = judge.judge([REQ])
    assert v.score == 5 and KEY not in v.judgment and "***" in v.judgment
    server.default = (401, b"ECHO", {}, 0.0)
    with pytest.raises(JudgeError) as e:
        judge.judge([REQ._replace(user_prompt="other")])
    assert "HTTP 401" in str(e.value) and "***" in str(e.value)
    texts = [str(e.value), repr(e.value), repr(judge), str(vars(judge)), caplog.text,
             *capsys.readouterr(), (tmp_path / "c.jsonl").read_text()]
    assert not [t for t in texts if KEY in t]
    assert any("HTTP 500" in r.getMessage() for r in caplog.records)  # the retry was logged, redacted
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(judge)


def test_no_key_and_bad_specs_are_user_errors(monkeypatch):
    for var in ("RUINSTRUCT_JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(UserError, match="no API key"):
        make_judge("api:gpt-4")
    with pytest.raises(UserError, match="expected local:<model dir> or api:<model name>"):
        make_judge("gpt-4")
    with pytest.raises(UserError, match="model folder not found"):
        make_judge("local:/no/such/dir")
    with pytest.raises(UserError, match="contains whitespace or control characters") as e:
        ApiJudge(api_key=KEY + "\n")
    assert KEY not in str(e.value)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert make_judge("api:gpt-4").api_base == "https://api.openai.com/v1"  # OpenAI's key, OpenAI's endpoint
    monkeypatch.setenv("RUINSTRUCT_JUDGE_API_BASE", "http://127.0.0.1:9/v9/")
    # OpenAI's key is not sent to another endpoint unasked; the judge's own variable is
    with pytest.raises(UserError, match=r"no API key for http://127.0.0.1:9/v9 \(set RUINSTRUCT_JUDGE_API_KEY,") as e:
        make_judge("api:")
    assert KEY not in str(e.value)
    monkeypatch.setenv("RUINSTRUCT_JUDGE_API_KEY", KEY)
    j = make_judge("api:")
    assert (j.model, j.url) == ("gpt-4", "http://127.0.0.1:9/v9/chat/completions")


# ---------------------------------------------------------------------------------------------
# local judge


def test_rating_distribution_when_ten_is_one_token_or_two():
    import torch

    logits = torch.zeros(20)
    logits[1:10] = torch.arange(1, 10, dtype=torch.float)  # ids 1..9: the digits
    logits[12] = 2.0  # id 12: "10"
    one = rating_distribution(logits, torch.zeros(20), RatingTokens(list(range(1, 10)), 12, None))
    raw = torch.softmax(logits.double(), -1)[[*range(1, 10), 12]]
    assert one == pytest.approx((raw / raw.sum()).tolist(), abs=1e-12)
    after_one = torch.zeros(20)
    after_one[0] = 3.0  # id 0: "0"
    two = rating_distribution(logits, after_one, RatingTokens(list(range(1, 10)), None, 0))
    p = torch.softmax(logits.double(), -1)
    p0 = torch.softmax(after_one.double(), -1)[0]
    want = [p[1] * (1 - p0), *p[2:10], p[1] * p0]
    total = sum(want)
    assert two == pytest.approx([float(x / total) for x in want], abs=1e-12)
    assert expected_rating([0.0] * 9 + [1.0]) == 10 and expected_rating([1.0] + [0.0] * 9) == 1


def test_local_judge_ratings_equal_the_expectation_from_the_logits(tiny_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompts = load_judge_prompts()
    q = {"question_id": 1, "category": "writing", "turns": ["Напишите письмо.", "Короче."]}
    reqs = [build_request(q, ["Вот письмо.", "Коротко."], prompts, turn=1),
            build_request(q, ["Длинный ответ " * 20, "ещё"], prompts, turn=2),
            build_request(q, ["Ок.", "Да."], prompts, turn=1)]
    judge = LocalJudge(tiny_dir / "llama", batch_size=2)  # two batches, left padding in each
    verdicts = judge.judge(reqs)
    assert all(1 <= v.score <= 10 for v in verdicts)
    assert all(f"Rating: [[{v.score:.2f}]]" in v.judgment for v in verdicts)

    # independently: one unpadded sequence at a time, the rating tokens looked up by hand
    tok = AutoTokenizer.from_pretrained(tiny_dir / "llama")
    net = AutoModelForCausalLM.from_pretrained(tiny_dir / "llama").eval()
    assert tok.chat_template is None  # so the prompt is plain text
    vocab = tok.get_vocab()
    assert "10" not in vocab  # this tokenizer spells 10 as "1" "0"
    digit = [vocab[str(k)] for k in range(1, 10)]
    for r, v in zip(reqs, verdicts, strict=True):
        text = f"{r.system_prompt}\n\n{r.user_prompt}\n\n{LOCAL_PREFILL}"
        ids = torch.tensor([tok(text)["input_ids"] + [vocab["1"]]])
        with torch.no_grad():
            logits = net(input_ids=ids).logits[0].double()
        p = torch.softmax(logits[-2], -1)
        p0 = torch.softmax(logits[-1], -1)[vocab["0"]]
        w = [p[digit[0]] * (1 - p0), *(p[d] for d in digit[1:]), p[digit[0]] * p0]
        want = float(sum(k * x for k, x in zip(range(1, 11), w, strict=True)) / sum(w))
        assert v.score == pytest.approx(want, abs=1e-5)
    assert len({round(v.score, 6) for v in verdicts}) == 3  # different prompts, different ratings


def test_local_judge_with_a_chat_template_and_a_too_long_prompt(tiny_dir, tmp_path):
    from transformers import AutoTokenizer

    from ruinstruct.chat import install_template

    folder = tmp_path / "judge"
    import shutil

    shutil.copytree(tiny_dir / "xglm", folder)
    install_template(AutoTokenizer.from_pretrained(folder), "lora").save_pretrained(folder)
    judge = LocalJudge(folder)
    assert rating_tokens(judge.load()[1]).digits
    ids = judge.render(REQ)
    text = judge.load()[1].decode(ids)
    assert text.startswith("<s> system\nYou are a helpful assistant. </s>") and text.endswith("<s> bot\n" + LOCAL_PREFILL)
    long = REQ._replace(user_prompt="слово " * 3000)
    short, too_long = judge.judge([REQ, long])
    assert 1 <= short.score <= 10
    assert too_long.score == -1 and "exceeds the judge's context of" in too_long.judgment
