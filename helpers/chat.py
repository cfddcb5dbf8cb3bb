"""Where the prompt ends in a prompt-completion example, as the trainer tokenizes it.

trl 1.16 tokenizes a conversational prompt-completion row twice: the prompt alone with
the assistant turn opened (``add_generation_prompt=True``), and the prompt followed by
the completion. The completion is what follows their common prefix, and only it
carries loss. Everything in the course that needs that boundary (label masks, the
benchmark's padded text, teacher-forced scoring) takes it from here, so they agree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptCompletion:
    """One row's token ids: the whole chat, and where its completion starts."""

    ids: list[int]  # prompt + completion, as the trainer sees them
    prompt_ids: list[int]  # the prompt alone, assistant turn opened
    start: int  # first completion token (the length of the common prefix)

    @property
    def prompt_is_prefix(self) -> bool:
        """True when the chat template renders the prompt the same inside the whole chat."""
        return self.start == len(self.prompt_ids)


def prompt_completion(tokenizer, row: dict) -> PromptCompletion:
    """Tokenize a conversational prompt-completion row as trl's SFTTrainer does."""
    prompt = list(
        tokenizer.apply_chat_template(
            row["prompt"], tokenize=True, return_dict=True, add_generation_prompt=True
        )["input_ids"]
    )
    full = list(
        tokenizer.apply_chat_template(
            row["prompt"] + row["completion"], tokenize=True, return_dict=True
        )["input_ids"]
    )
    start = 0
    while start < min(len(prompt), len(full)) and prompt[start] == full[start]:
        start += 1
    return PromptCompletion(ids=full, prompt_ids=prompt, start=start)


def prompt_length(tokenizer, row: dict) -> int:
    """How many tokens of the tokenized chat belong to the prompt (carry no loss)."""
    return prompt_completion(tokenizer, row).start
