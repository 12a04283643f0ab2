"""Long free-text bounds counted by the decoder instead of unrolled into the compiled index
(localsym/lm/bounded.py): which bounds are left to the decoder, that the tokens it allows are
exactly those the unrolled index allows (both walked side by side over the real vocabulary), and
that the real model's answers do not change while the index shrinks."""

from __future__ import annotations

import random
from typing import Literal, Optional

import numpy as np
import pytest
from pydantic import BaseModel, Field

from localsym.lm import LlamaCpp, Message, SamplingParams
from localsym.lm.base import schema_of
from localsym.lm.bounded import RELAX_CHARS, Bounds, StringCounter, UnitTable, relax


class Item(BaseModel):
    title: str = Field(max_length=40)
    tags: list[str] = Field(max_length=3)


class Turn(BaseModel):
    done: bool
    message: str = Field(max_length=300)
    note: Optional[str] = Field(None, max_length=64)
    items: list[Item] = Field(max_length=2)
    names: list[str] = Field(max_length=2)
    short: str = Field(max_length=8)  # cheap to unroll: left in the index


def test_long_bounds_are_left_to_the_decoder_and_short_ones_unrolled():
    schema, bounds = relax(schema_of(Turn))
    assert bounds.paths == {("message",): 300, ("note",): 64, ("items", "title"): 40}
    assert schema["properties"]["short"]["maxLength"] == 8
    assert "maxLength" not in schema["properties"]["message"]
    assert schema_of(Turn)["properties"]["message"]["maxLength"] == 300  # the original kept


def test_a_bound_is_left_in_the_index_where_its_place_is_ambiguous():
    # (untagged unions: no constant first property tells their branches apart)
    class A(BaseModel):
        text: str = Field(max_length=50)

    class B(BaseModel):
        text: str = Field(max_length=60)  # the same path, another bound

    class C(BaseModel):
        label: str = Field(max_length=40)

    class D(BaseModel):
        label: Literal["x" * 50]  # an enum at the same path: its value is longer than 40

    class Union(BaseModel):
        first: A | B
        second: C | D
        table: dict[str, str]  # an open dict: any key, so any path below "table"
        free: str = Field(max_length=90)

    schema, bounds = relax(schema_of(Union))
    assert bounds.paths == {("free",): 90}
    assert schema_of(Union) != schema

    class Open(BaseModel):
        table: dict[str, "Free"]

    class Free(BaseModel):
        text: str = Field(max_length=50)

    Open.model_rebuild()
    assert not relax(schema_of(Open))[1]  # ("table", "*", "text"): any key could spell it


def test_the_branches_of_a_tagged_union_are_told_apart_by_their_tag():
    """The workflow optimizer's actions: a new node's task is free, a new role's at most 600
    characters, both at ("actions", "task"); the "action" each starts with tells them apart."""
    class AddNode(BaseModel):
        action: Literal["add_node"]
        task: str

    class AddRole(BaseModel):
        action: Literal["add_role"]
        task: str = Field(max_length=600)
        description: str = Field(max_length=200)

    class Update(BaseModel):
        actions: list[AddNode | AddRole]

    schema, bounds = relax(schema_of(Update))
    assert bounds.tags == {"action"}
    assert bounds.paths == {("actions", "task\0action\0add_role"): 600,
                            ("actions", "description\0action\0add_role"): 200}
    counter = StringCounter(bounds, UnitTable([bytes([c]) for c in range(256)]))
    counter.feed(b'{"actions": [{"action": "add_node", "task": "')
    assert counter.limit() is None
    counter.feed(b'x"}, {"action": "add_role", "description": "')
    assert counter.limit() is not None and counter._bound == 200
    counter.feed(b'y", "task": "')
    assert counter._bound == 600

    class Untagged(BaseModel):  # its first property is not a constant: no tag
        kind: str
        task: str = Field(max_length=600)

    class Mixed(BaseModel):
        actions: list[AddNode | Untagged]

    bounds = relax(schema_of(Mixed))[1]
    assert bounds.paths == {("actions", "task"): 600}
    counter = StringCounter(bounds, UnitTable([bytes([c]) for c in range(256)]))
    counter.feed(b'{"actions": [{"action": "add_node", "task": "')
    assert counter.limit() is None  # the tagged branch: free
    counter.feed(b'x"}, {"kind": "k", "task": "')
    assert counter._bound == 600

    class Loose(BaseModel):  # "action" first but free here: no longer a tag anywhere
        action: str
        task: str = Field(max_length=50)

    class Both(BaseModel):
        actions: list[AddNode | Loose]

    assert not relax(schema_of(Both))[1]


def test_a_recursive_schema_is_left_as_it_is():
    class Node(BaseModel):
        text: str = Field(max_length=100)
        children: list["Node"] = []

    Node.model_rebuild()
    assert relax(schema_of(Node)) == (schema_of(Node), Bounds())


def test_the_counter_follows_paths_keys_and_escapes():
    pieces = [bytes([c]) for c in range(256)]
    counter = StringCounter(Bounds({("items", "title"): 3, ("message",): 2}), UnitTable(pieces))
    counter.feed(b'{"message": "a')
    assert not counter.at_bound()
    counter.feed(b'\\u00e')
    allowed = counter.limit()
    assert allowed[ord("9")] and allowed[ord('"')]  # the escape's last digit adds no character
    counter.feed(b'9')
    assert counter.at_bound()
    counter.feed(b'", "items": [{"title": "x\\"')  # an escaped quote does not close the string
    assert not counter.at_bound()
    counter.feed(b'y')
    assert counter.at_bound() and not counter.limit()[ord("z")] and counter.limit()[ord('"')]
    counter.feed(b'", "other": "')
    assert counter.limit() is None  # no bound at ("items", "other")
    counter.feed(b'"}], "message": "a\xc3')  # half of a two-byte character
    assert not counter.at_bound() and counter.limit()[0xA9]
    counter.feed(b"\xa9")
    assert counter.at_bound()


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    backend = LlamaCpp(cache_dir=tmp_path_factory.mktemp("bounded"))
    yield backend
    backend.close()


class FreeStep(BaseModel):
    action: Literal["free"]
    text: str


class BoundStep(BaseModel):
    action: Literal["bound"]
    text: str = Field(max_length=RELAX_CHARS + 2)


class Short(BaseModel):
    answer: Literal["yes", "no"]
    steps: list[FreeStep | BoundStep] = Field(max_length=2)
    message: str = Field(max_length=RELAX_CHARS + 4)
    names: list[str] = Field(max_length=2)
    note: Optional[str] = Field(None, max_length=RELAX_CHARS)


def _allowed(guide, size: int) -> np.ndarray:
    mask = np.zeros((size + 31) // 32, dtype=np.int32)
    guide.write_mask_into(mask.ctypes.data, mask.size, mask.itemsize)
    return np.unpackbits(mask.view(np.uint8), bitorder="little")[:size].astype(bool)


def test_the_decoder_allows_exactly_the_tokens_the_unrolled_index_allows(lm):
    """Random walks over the real vocabulary (long tokens, escapes, multi-byte characters,
    quotes inside tokens favoured): at every step the unrolled index's tokens equal the relaxed
    index's tokens under the counter's limit, down to the forced closing quote at the bound."""
    from outlines_core import Guide

    from localsym.lm.bounded import relaxed_schema
    from localsym.lm.schema_index import index_bytes

    lm.llama
    pieces = lm.tokens.pieces()
    size = len(pieces)
    unrolled = lm.indexes.index_for(Short, " ", {"test": 1}, lm._vocab, True, relax=False)
    relaxed = lm.indexes.index_for(Short, " ", {"test": 1}, lm._vocab, True, relax=True)
    assert len(index_bytes(relaxed)) < len(index_bytes(unrolled)) / 2
    bounds = relaxed_schema(Short)[1]
    assert set(bounds.paths) == {("message",), ("note",), ("steps", "text\0action\0bound")}
    table = UnitTable(pieces)
    assert not table.too_long.any()  # no token of this vocabulary writes a whole long string
    odd = [t for t, p in enumerate(pieces) if len(p) > 6 or b"\\" in p or b'"' in p or
           any(c >= 0x80 for c in p)]
    rng = random.Random(0)
    steps = limited = closed = 0
    for walk in range(24):
        a, b = Guide(unrolled), Guide(relaxed)
        counter = StringCounter(bounds, table)
        for _ in range(400):
            if a.is_finished():
                break
            want = _allowed(a, size)
            got = _allowed(b, size)
            limit = counter.limit()
            if limit is not None:
                limited += bool((got & ~limit).any())
                got &= limit
            assert (want == got).all(), (walk, steps, np.flatnonzero(want != got)[:5])
            if counter.at_bound():
                closed += 1
                assert all(pieces[t][:1] == b'"' for t in np.flatnonzero(want))
            choices = np.flatnonzero(want)
            if not choices.size:
                break
            favoured = [t for t in odd if want[t]] if rng.random() < 0.7 else []
            token = int(rng.choice(favoured or list(choices)))
            if token == lm._eos:
                break
            a.advance(token_id=token, return_tokens=False)
            b.advance(token_id=token, return_tokens=False)
            counter.feed(pieces[token])
            steps += 1
    # the limit did the unrolled index's work (it refused tokens the relaxed index allows) and
    # strings ran to their bound
    assert steps > 2000 and limited > 20 and closed > 5, (steps, limited, closed)


def test_the_real_models_answers_do_not_change(lm):
    """The same calls decoded with the bound unrolled and with the bound counted: the same
    text, token for token, and a message that ran to its bound closed there."""
    class Long(BaseModel):
        message: str = Field(max_length=RELAX_CHARS + 8, description="a long story")
        mood: Literal["happy", "sad"]

    calls = [[Message(role="system", content="Answer in JSON. Write very long messages."),
              Message(role="user", content=q)] for q in
             ("Tell me the whole history of Rome.", "Describe your morning in detail.",
              "Is the sky blue?")]
    params = SamplingParams(max_tokens=48)
    outs = {}
    for relax_on in (False, True):
        lm.relax = relax_on
        try:
            outs[relax_on] = [lm.complete(m, Long, params) for m in calls]
        finally:
            lm.relax = True
    assert [c.text for c in outs[True]] == [c.text for c in outs[False]]
    lengths = [len(Long.model_validate_json(c.text).message) for c in outs[True]]
    assert max(lengths) == RELAX_CHARS + 8, lengths  # at least one ran to the bound
