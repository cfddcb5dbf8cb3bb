"""How the server writes an answer: one token at a time, so that it can stream and stop.

``decode`` is the loop: the prompt goes through the model once, then one token per step
with the KV cache fed back. Each step picks the next token greedily (``temperature`` 0)
or draws it from the model's distribution reshaped by ``temperature`` and ``top_p``,
with a ``torch.Generator`` of the request's own (never the global random state), so a
given ``seed`` gives the same answer however many other requests ran before it. It
checks ``cancelled`` before each step: a client that went away stops the work at once.

``Answer`` turns the tokens into text as they come: it holds back what might still
change (the start of a stop sequence, a half-written UTF-8 character, whitespace at the
end) and gives out only text that is final, so the streamed pieces add up to exactly
the non-streamed answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import torch


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The token ids of the conversation, with the assistant's turn opened."""
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(encoded["input_ids"])


def pick(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> int:
    """The next token: the most likely one (temperature 0), or one drawn from the
    ``top_p`` nucleus of the distribution at ``temperature``."""
    if temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        sorted_probs = sorted_probs * (before < top_p)  # the first token is always kept
        return int(order[torch.multinomial(sorted_probs, 1, generator=generator)])
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.no_grad()
def decode(
    model,
    ids: Sequence[int],
    *,
    max_tokens: int,
    eos_token_id: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    cancelled: threading.Event | None = None,
) -> Iterator[int]:
    """The new tokens, one at a time, up to and including ``eos_token_id`` or
    ``max_tokens`` of them; stops early (without a word) when ``cancelled`` is set."""
    step = torch.tensor([list(ids)], dtype=torch.long)
    cache = None
    for _ in range(max_tokens):
        if cancelled is not None and cancelled.is_set():
            return
        out = model(input_ids=step, past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        token = pick(out.logits[0, -1], temperature, top_p, generator)
        yield token
        if token == eos_token_id:
            return
        step = torch.tensor([[token]], dtype=torch.long)


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of ``text`` may still become a stop sequence."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class Answer:
    """The text of an answer as its tokens arrive: ``add(token)`` returns the text that
    became final (maybe ""), ``finish()`` the rest; ``stopped_by_sequence`` says whether a
    stop sequence ended it. The whole answer is stripped of whitespace at both ends, and
    never contains a stop sequence or what follows it."""

    def __init__(self, tokenizer, stops: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.tokens: list[int] = []
        self.raw = ""
        self.sent = 0  # how much of self.raw has been given out
        self.stopped_by_sequence = False
        self.text = ""  # everything given out so far

    def _give(self, end: int) -> str:
        start = len(self.raw) - len(self.raw.lstrip())  # leading whitespace never goes out
        end = start + len(self.raw[start:end].rstrip())
        begin = max(self.sent, start)
        if end <= begin:
            return ""
        piece = self.raw[begin:end]
        self.sent = end
        self.text += piece
        return piece

    def add(self, token: int) -> str:
        if self.stopped_by_sequence:
            return ""
        self.tokens.append(token)
        self.raw = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        found = [i for i in (self.raw.find(s) for s in self.stops) if i >= 0]
        if found:
            self.stopped_by_sequence = True
            self.raw = self.raw[: min(found)]
            return self._give(len(self.raw))
        end = len(self.raw) - _held_back(self.raw, self.stops)
        while end > 0 and self.raw[end - 1] == "\ufffd":  # half of a multi-byte character
            end -= 1
        return self._give(end)

    def finish(self) -> str:
        return self._give(len(self.raw))
