"""The in-process llama.cpp backend on the real embedded model."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from conftest import Verdict, run_python
from localsym.errors import (ChatTemplateError, ContextOverflowError, ModelCorruptError,
                             ModelNotFoundError, TruncatedOutputError)
from localsym.lm import LlamaCpp, Message, SamplingParams, resolve
from localsym.lm.models import ModelRef

QUESTION = [Message(role="system", content="Answer in JSON."),
            Message(role="user", content="Is the sky blue on a clear day?")]


@pytest.fixture(scope="session")
def backend(tmp_path_factory):
    lm = LlamaCpp(cache_dir=tmp_path_factory.mktemp("backend"))
    yield lm
    lm.close()


def test_real_generation_is_validated_into_the_schema(backend):
    value, completion = backend.call(QUESTION, Verdict, max_tokens=48)
    assert isinstance(value, Verdict)
    assert value.label in ("yes", "no")
    assert completion.completion_tokens > 0
    # the model's own chat template (ChatML, from the GGUF metadata) rendered the prompt
    assert completion.prompt.endswith("<|im_start|>assistant\n")
    assert "Is the sky blue" in completion.prompt
    # answers contain no control tokens
    assert "<|im" not in completion.text


class Steps(BaseModel):
    steps: list[str] = Field(description="many short steps")


def test_truncated_answer_is_retried_with_a_larger_budget(backend):
    params = SamplingParams(max_tokens=4, max_tokens_limit=256)
    completion = backend.complete(QUESTION, Verdict, params)
    assert completion.retries >= 1
    Verdict.model_validate_json(completion.text)


def test_answer_that_never_fits_the_limit_is_a_clear_error(backend):
    with pytest.raises(TruncatedOutputError) as err:
        backend.complete(QUESTION, Verdict, SamplingParams(max_tokens=2, max_tokens_limit=4))
    assert "cut off after 4 tokens" in str(err.value)
    assert "max_tokens_limit" in err.value.fix


def test_overlong_prompt_is_a_clear_error_with_token_counts(tmp_path):
    small = LlamaCpp(n_ctx=128, cache_dir=tmp_path)
    try:
        with pytest.raises(ContextOverflowError) as err:
            small.complete([Message(role="user", content="word " * 400)], Verdict,
                           SamplingParams(max_tokens=32))
        msg = str(err.value)
        assert f"context of {small.n_ctx} tokens" in msg and "answer budget of 32" in msg
        assert "prompt of 4" in msg  # ~400 words: the prompt's own token count is given
        assert "shorten the prompt" in err.value.fix
    finally:
        small.close()


def test_greedy_answer_does_not_depend_on_earlier_calls(tmp_path):
    """KV-cache reuse must not change answers: call A, then B sharing A's prefix, then A again,
    and compare with a fresh model. Sampled (not greedy) so that any numeric drift shows."""
    lm = LlamaCpp(n_batch=16, cache_dir=tmp_path)
    fresh = LlamaCpp(n_batch=16, cache_dir=tmp_path)
    system = Message(role="system", content="You judge statements. " * 8)
    a = [system, Message(role="user", content="Fire is cold.")]
    b = [system, Message(role="user", content="Water is wet.")]
    params = SamplingParams(temperature=0.9, seed=11, max_tokens=48)
    try:
        first = lm.complete(a, Verdict, params)
        lm.complete(b, Verdict, params)
        again = lm.complete(a, Verdict, params)
        assert again.prompt_tokens_evaluated < again.prompt_tokens  # the prefix was reused
        assert first.text == again.text == fresh.complete(a, Verdict, params).text
    finally:
        lm.close()
        fresh.close()


def test_same_seed_same_answer_and_seeds_matter(backend):
    # a free-text field: where the schema forces everything else, the samples differ there
    runs = {seed: backend.complete(QUESTION, Verdict, SamplingParams(
        temperature=1.0, seed=seed, max_tokens=24, max_tokens_limit=128)).text
        for seed in (1, 2, 3, 1)}
    assert runs[1] == backend.complete(QUESTION, Verdict, SamplingParams(
        temperature=1.0, seed=1, max_tokens=24, max_tokens_limit=128)).text
    assert len(set(runs.values())) >= 2


def test_two_fresh_processes_without_cache_give_identical_output(tmp_path):
    code = f"""
        import json
        from conftest import Verdict
        from localsym.lm import open_lm
        lm = open_lm(cache_dir={str(tmp_path)!r}, cache_mode="off")
        _, c = lm.call("Is ice cold? Answer in JSON.", Verdict, max_tokens=48)
        print(json.dumps({{"text": c.text}}))
    """
    env = {"PYTHONPATH": str(Path(__file__).parent)}
    assert run_python(code, env) == run_python(code, env)


def test_compiled_schema_index_is_loaded_from_disk_by_a_second_process(tmp_path):
    code = f"""
        import json
        from conftest import Verdict
        from localsym.lm import LlamaCpp
        lm = LlamaCpp(cache_dir={str(tmp_path)!r})
        lm.generate("Is ice cold?", Verdict, max_tokens=48)
        print(json.dumps({{"compiled": lm.indexes.compiled, "loaded": lm.indexes.loaded}}))
    """
    env = {"PYTHONPATH": str(Path(__file__).parent)}
    assert run_python(code, env) == {"compiled": 1, "loaded": 0}
    assert run_python(code, env) == {"compiled": 0, "loaded": 1}


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError) as err:
        LlamaCpp(tmp_path / "nowhere.gguf")
    assert "no model file at" in str(err.value) and err.value.fix


def test_registry_model_not_installed_says_how_to_get_it(tmp_path):
    ref = resolve("smollm2-135m-instruct")
    absent = ModelRef(name=ref.name, path=tmp_path / "gone.gguf", sha256=ref.sha256,
                      source=ref.source)
    lm = LlamaCpp(absent, cache_dir=tmp_path)
    with pytest.raises(ModelNotFoundError) as err:
        lm.generate("hi", Verdict)
    assert "not installed" in str(err.value)
    assert "localsym models install smollm2-135m-instruct" in err.value.fix


def test_file_that_is_not_gguf_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a model" * 100)
    with pytest.raises(ModelCorruptError) as err:
        LlamaCpp(bad, cache_dir=tmp_path).generate("hi", Verdict)
    assert "not a usable GGUF file" in str(err.value)


def test_registry_model_with_wrong_bytes_is_caught_by_sha256(tmp_path):
    ref = resolve("smollm2-135m-instruct")
    copy = tmp_path / ref.path.name
    with open(ref.path, "rb") as src, open(copy, "wb") as dst:
        dst.write(src.read(10_000_000))  # a download cut short
    lm = LlamaCpp(ModelRef(name=ref.name, path=copy, sha256=ref.sha256, source=ref.source),
                  cache_dir=tmp_path)
    with pytest.raises(ModelCorruptError) as err:
        lm.generate("hi", Verdict)
    assert "sha256" in str(err.value) and "reinstall" in err.value.fix


def test_truncated_user_file_fails_to_load_with_a_clear_error(tmp_path):
    src = resolve("smollm2-135m-instruct").path
    cut = tmp_path / "cut.gguf"
    with open(src, "rb") as f, open(cut, "wb") as out:
        out.write(f.read(30_000_000))
    with pytest.raises(ModelCorruptError) as err:
        LlamaCpp(cut, cache_dir=tmp_path).generate("hi", Verdict)
    assert "could not load" in str(err.value)


def test_model_without_chat_template_needs_a_chat_format(tmp_path):
    with pytest.raises(ChatTemplateError) as err:
        LlamaCpp(chat_format="none", cache_dir=tmp_path).generate("hi", Verdict)
    assert "chat_format" in err.value.fix
    # a named llama-cpp-python format is the fix
    chatml = LlamaCpp(chat_format="chatml", cache_dir=tmp_path)
    try:
        value, completion = chatml.call("Is fire hot?", Verdict, max_tokens=48)
        assert "<|im_start|>user\nIs fire hot?<|im_end|>" in completion.prompt
        assert "SmolLM" not in completion.prompt  # not the GGUF template's default system line
    finally:
        chatml.close()


def test_on_limit_close_completes_the_json_instead_of_failing(backend):
    params = SamplingParams(max_tokens=8, max_tokens_limit=8, on_limit="close")
    completion = backend.complete(QUESTION, Steps, params)
    assert completion.closed_early
    Steps.model_validate_json(completion.text)
    assert completion.completion_tokens <= 8 + 64


def test_a_gguf_without_chat_template_is_a_clear_error_unless_a_format_is_given(tmp_path):
    """A real GGUF whose metadata lacks the template: the key renamed in place (same length)."""
    data = resolve("smollm2-135m-instruct").path.read_bytes()
    key = b"tokenizer.chat_template"
    assert data.count(key) == 1
    bare = tmp_path / "no-template.gguf"
    bare.write_bytes(data.replace(key, b"tokenizer.chat_templatX"))
    with pytest.raises(ChatTemplateError) as err:
        LlamaCpp(bare, cache_dir=tmp_path).generate("hi", Verdict)
    assert "has no chat template in its GGUF metadata" in str(err.value)
    assert "chat_format" in err.value.fix
    lm = LlamaCpp(bare, chat_format="chatml", cache_dir=tmp_path)
    try:
        assert lm.generate("Is fire hot?", Verdict, max_tokens=48).label in ("yes", "no")
    finally:
        lm.close()


def test_tokens_longer_than_32_bytes_are_read_whole(backend):
    """llama-cpp-python's detokenize garbles pieces over 32 bytes; answers and the vocabulary
    must not. Token 3299 of SmolLM2 is a newline and 32 spaces."""
    assert backend.tokens.text([3299]) == "\n" + " " * 32
    assert max(len(p) for p in backend.tokens.pieces()) == 81
    assert backend.tokens.text([3299, 8500]) == "\n" + " " * 32 + "\n" + " " * 40
