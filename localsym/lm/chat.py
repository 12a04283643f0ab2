"""Chat messages as a model's prompt: the chat format (the model's own Jinja2 template, a
llama-cpp-python format, or a template string) and tokenization in which a message's text can
never become a control token."""

from __future__ import annotations

import os
from typing import Any

from localsym.errors import ChatTemplateError
from localsym.lm.base import Message


class ChatRenderer:
    """A chat format, bound to a loaded model with ``bind``; ``render`` gives (prompt, tokens)."""

    def __init__(self, name: str, make):
        self.name, self._make = name, make  # make: llm -> (messages -> (prompt, add_bos))
        self.llm: Any = None  # the model bound (``bind``)
        self._format: Any = None

    def bind(self, llm) -> "ChatRenderer":
        bound = ChatRenderer(self.name, self._make)
        bound.llm, bound._format = llm, self._make(llm)
        return bound

    @classmethod
    def for_format(cls, fmt: str, name: str, meta: dict) -> "ChatRenderer":
        """The renderer of a chat format setting: "gguf" (the model's own template), a
        llama-cpp-python format name (chatml, gemma, ...), or a Jinja2 template string."""
        from llama_cpp import llama_chat_format as lcf  # noqa: PLC0415 (the llama.cpp library loads only when a model does)

        if fmt == "gguf" or "{%" in fmt or "{{" in fmt:
            template = meta.get("tokenizer.chat_template") if fmt == "gguf" else fmt
            if not isinstance(template, str) or not template:
                raise ChatTemplateError(
                    f"model {name!r} has no chat template in its GGUF metadata",
                    "pass chat_format= a llama-cpp-python format name (chatml, gemma, llama-3, "
                    "...) or a Jinja2 template")

            def with_template(llm):
                token_text = llm.token_get_text
                formatter = lcf.Jinja2ChatFormatter(
                    template=template, eos_token=token_text(llm.token_eos()),
                    bos_token=token_text(llm.token_bos()), add_generation_prompt=True)
                return lambda msgs: _rendered(formatter(messages=msgs))
            return cls(name, with_template)
        if fmt == "none":
            raise ChatTemplateError(
                f"model {name!r} is a base model with no chat template",
                "pass chat_format= a llama-cpp-python format name (chatml, gemma, ...) or a "
                "Jinja2 template")
        func = getattr(lcf, "format_" + fmt.replace("-", "_"), None) or \
            getattr(lcf, "format_" + fmt.replace("-", ""), None)
        if func is None:
            raise ChatTemplateError(f"unknown chat format {fmt!r}",
                                    "use 'gguf' (the model's own template), a llama-cpp-python "
                                    "format name such as chatml or gemma, or a Jinja2 template")
        return cls(name, lambda llm: (lambda msgs: _rendered(func(messages=msgs))))

    def render(self, messages: list[Message]) -> tuple[str, list[int]]:
        """The prompt text for ``messages`` in the model's chat format, and its tokens."""
        llm = self.llm
        msgs = [m.model_dump() for m in messages]
        prompt, add_bos = self._format(msgs)
        hostile = [i for i, m in enumerate(msgs) if _has_control_text(llm, m["content"])]
        if not hostile:
            return prompt, llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)
        # A message whose text spells a control token ("<|im_end|><|im_start|>system ...", from
        # a dataset or a tool result) must not become one: control tokens come from the chat
        # template only. Render with slots, then tokenize the template's parts with special
        # tokens and the messages' text as plain text.
        slots = {i: f"LOCALSYMSLOT{i}X{os.getpid()}" for i in hostile}
        slotted, _ = self._format([{**m, "content": slots[i]} if i in slots else m
                                   for i, m in enumerate(msgs)])
        tokens, rest, first = [], slotted, True
        for i, slot in slots.items():
            text = msgs[i]["content"]
            head, sep, rest = rest.partition(slot)
            if not sep:  # the template dropped or changed the slot: refuse rather than guess
                raise ChatTemplateError(f"cannot isolate a message in the chat template of "
                                        f"{self.name!r}", "use chat_format='chatml' or a "
                                                              "template that keeps message text")
            tokens += llm.tokenize(head.encode("utf-8"), add_bos=add_bos and first, special=True)
            tokens += llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            first = False
        tokens += llm.tokenize(rest.encode("utf-8"), add_bos=False, special=True)
        return prompt, tokens


    def render_segments(self, messages: list[Message]) -> tuple[str, list[int], list[int]]:
        """The prompt for ``messages``, its tokens, and where each segment starts: the template's
        text before a message, the message's text, and, last, the template's tail. Each piece
        is tokenized on its own (the template's with special tokens, a message's as plain text),
        so a prefix of messages always gives the same tokens and the same segment starts,
        whatever follows: the KV of a prefix is the same wherever it was computed (``Streams``
        evaluates each segment in chunks aligned to its own start), and the template's text
        before the last message (``<|im_start|>user``) is shared by every call that shares
        what came before it. A template that drops or merges a message (gemma's puts the system
        message into the first user turn) gives one segment: reuse then works from position 0
        only."""
        llm = self.llm
        msgs = [m.model_dump() for m in messages]
        prompt, add_bos = self._format(msgs)
        slots = [f"LOCALSYMSLOT{i}X{os.getpid()}" for i in range(len(msgs))]
        slotted, _ = self._format([{**m, "content": slots[i]} for i, m in enumerate(msgs)])
        tokens: list[int] = []
        starts: list[int] = []
        rest, first = slotted, True
        for i, slot in enumerate(slots):
            head, sep, rest = rest.partition(slot)
            if not sep:  # the template drops or merges a message: the prompt is one segment
                prompt, whole = self.render(messages)
                return prompt, whole, [0]
            starts.append(len(tokens))
            tokens += llm.tokenize(head.encode("utf-8"), add_bos=add_bos and first, special=True)
            starts.append(len(tokens))  # the template's text between messages is shared too
            tokens += llm.tokenize(msgs[i]["content"].encode("utf-8"), add_bos=False,
                                   special=False)
            first = False
        if rest:
            starts.append(len(tokens))
            tokens += llm.tokenize(rest.encode("utf-8"), add_bos=add_bos and first, special=True)
        return prompt, tokens, [s for k, s in enumerate(starts) if k == 0 or s > starts[k - 1]]


def _rendered(response) -> tuple[str, bool]:
    """(prompt, add_bos) from a llama-cpp-python ChatFormatterResponse."""
    return response.prompt, not getattr(response, "added_special", False)


def _has_control_text(llm, text: str) -> bool:
    """Whether ``text`` spells one of the model's special tokens (it tokenizes differently with
    special-token parsing on)."""
    if "<" not in text and "[" not in text and "|" not in text:
        return False  # every chat-format control token in use has one of these
    data = text.encode("utf-8")
    return llm.tokenize(data, add_bos=False, special=True) != \
        llm.tokenize(data, add_bos=False, special=False)
