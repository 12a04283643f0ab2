"""Datasets written by an LLM from the agent's task description alone (for a task with none)."""

from __future__ import annotations

import json

from pydantic import create_model

from localsym.agent.schemas import PY_TYPES, outputs_model
from localsym.data import Example
from localsym.lm.base import SamplingParams
from localsym.templates import render


def generate_examples(lm, spec, count: int, seed: int = 0, with_expected: bool = True,
                      params=None) -> list[Example]:
    """Examples written by an LLM from the agent's task description alone (for a task with no
    dataset). Inputs follow the spec's input fields; with ``with_expected`` the answer follows its
    final outputs. Sampled with a per-example seed, duplicates dropped; deterministic."""
    inputs_model = create_model("GeneratedInputs",
                                **{f.name: (PY_TYPES[f.type], ...) for f in spec.inputs})
    last = spec.final_node()
    fields = {"inputs": (inputs_model, ...)}
    if with_expected:
        fields["expected"] = (outputs_model(f"{last.name}_expected", last.outputs, ()), ...)
    schema = create_model("GeneratedExample", **fields)
    params = params or SamplingParams(temperature=0.9, max_tokens=192, max_tokens_limit=384,
                                      on_limit="close")
    out: list[Example] = []
    seen: list[str] = []
    for attempt in range(count * 3):
        if len(out) >= count:
            break
        prompt = render("generate_data.j2", task=spec.description or spec.name,
                        inputs=spec.inputs, outputs=last.outputs if with_expected else [],
                        seen=seen[-5:], index=len(out) + 1)
        value = lm.generate([{"role": "user", "content": prompt}], schema,
                            params.model_copy(update={"seed": seed * 100003 + attempt}))
        key = json.dumps(value.inputs.model_dump(), sort_keys=True)
        if key in seen:
            continue
        seen.append(key)
        out.append(Example(id=f"generated-{len(out)}", inputs=value.inputs.model_dump(),
                           expected=value.expected.model_dump() if with_expected else None))
    return out
