"""Look inside a training batch: which tokens carry the loss, and how much of it is padding.

A causal language model learns to predict each token from the ones before it, but only
the positions whose *label* is a token id count in the loss; a label of -100
(``IGNORE_INDEX``) means "no loss here". A batch is a dict of tensors (``input_ids``,
``labels`` and ``attention_mask``, or ``position_ids`` when it is padding-free), and
every function here reads such a dict, whichever collator built it.

Chapter 04 uses this module to make label masking visible (as text and as a heat-map),
to measure the share of padding under padding, padding-free batching and packing, and to
show the PAD = EOS pitfall of the classic ``transformers`` collator next to its fix.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

# The trainer's sampler lives beside the trainer; chapter 04 shows it from here.
from .chat import prompt_completion
from .modes import eval_mode
from .sampling import BucketedSampler, bucketed_order  # noqa: F401

IGNORE_INDEX = -100
"""The label that tells PyTorch's cross-entropy to skip a position."""

PADDING, CONTEXT, LOSS = 0, 1, 2
"""What a position of a batch is: padding, a real token without loss, a token with loss."""
KIND_NAMES = {PADDING: "padding", CONTEXT: "no loss (context)", LOSS: "carries loss"}
KIND_COLOURS = {PADDING: "#d9d9d9", CONTEXT: "#6baed6", LOSS: "#fd8d3c"}

# SmolLM2's chat template with `{% generation %}` markers around what the assistant writes
# (its answer and the <|im_end|> that ends it). It renders exactly the same text as the
# original; the markers only let `apply_chat_template(..., return_assistant_tokens_mask=True)`
# report which tokens the assistant wrote, which trl's `assistant_only_loss=True` needs.
SMOLLM2_TEMPLATE_WITH_GENERATION_TAGS = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\\n' }}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# ------------------------------------------------------------------ tokens
def token_pieces(tokenizer, ids: Iterable[int]) -> list[str]:
    """The text of each token on its own (special tokens included)."""
    return [tokenizer.decode([int(i)]) for i in ids]


def show_tokens(tokenizer, text: str, *, add_special_tokens: bool = False) -> str:
    """One line per token: its position, its id and its text (quoted, so spaces show)."""
    ids = tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
    lines = [f"{len(ids)} tokens"]
    for pos, (i, piece) in enumerate(zip(ids, token_pieces(tokenizer, ids), strict=True)):
        lines.append(f"{pos:>4} {i:>6}  {piece!r}")
    return "\n".join(lines)


def split_tokens(tokenizer, text: str) -> str:
    """The text with a | between tokens (no special tokens added)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return "|".join(token_pieces(tokenizer, ids))


# ------------------------------------------------------------------ what each position is
def _row(batch: dict, key: str, row: int) -> torch.Tensor:
    return torch.as_tensor(batch[key])[row]


def kinds(batch: dict) -> torch.Tensor:
    """PADDING, CONTEXT or LOSS for every position of the batch (same shape as input_ids).

    Padding is where the attention mask is 0. A padding-free batch (no attention mask)
    has no padding, unless it was padded to a multiple of some size: those trailing
    positions carry position id 0 and label -100 after the last sequence, and count
    as context here, which is what the model sees.
    """
    labels = torch.as_tensor(batch["labels"])
    out = torch.full_like(labels, CONTEXT)
    out[labels != IGNORE_INDEX] = LOSS
    if "attention_mask" in batch:
        out[torch.as_tensor(batch["attention_mask"]) == 0] = PADDING
    return out


def loss_mask(batch: dict) -> torch.Tensor:
    """True where a position carries loss (its label is not -100)."""
    return torch.as_tensor(batch["labels"]) != IGNORE_INDEX


@dataclass(frozen=True)
class Counts:
    """Positions of one or more batches, by kind."""

    padding: int
    context: int
    loss: int
    batches: int = 1

    @property
    def total(self) -> int:
        return self.padding + self.context + self.loss

    @property
    def real(self) -> int:
        """Positions that hold a real token (not padding)."""
        return self.context + self.loss

    @property
    def pad_share(self) -> float:
        return self.padding / self.total if self.total else 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.padding + other.padding,
            self.context + other.context,
            self.loss + other.loss,
            self.batches + other.batches,
        )

    def __str__(self) -> str:
        return (
            f"{self.batches} batch(es), {self.total:,} positions: {self.real:,} real tokens "
            f"({self.loss:,} with loss), {self.padding:,} padding = {self.pad_share:.1%}"
        )


def count(batch: dict) -> Counts:
    """How many positions of a batch are padding, context and loss."""
    k = kinds(batch)
    return Counts(int((k == PADDING).sum()), int((k == CONTEXT).sum()), int((k == LOSS).sum()))


def pad_share(batch: dict) -> float:
    """The share of a batch's positions that are padding (0.0 to 1.0)."""
    return count(batch).pad_share


def batches(dataset, collator, batch_size: int, *, limit: int | None = None):
    """Collate the rows of `dataset` in order, `batch_size` at a time (the last may be short)."""
    n = len(dataset) if limit is None else min(limit * batch_size, len(dataset))
    for start in range(0, n, batch_size):
        rows = [dataset[i] for i in range(start, min(start + batch_size, n))]
        yield collator(rows)


def count_epoch(dataset, collator, batch_size: int) -> Counts:
    """Counts summed over one pass through `dataset`, in order (deterministic)."""
    total = None
    for batch in batches(dataset, collator, batch_size):
        c = count(batch)
        total = c if total is None else total + c
    if total is None:
        raise ValueError("The data set is empty.")
    return total


def eos_with_loss(batch: dict, eos_token_id: int) -> int:
    """How many end-of-sequence tokens the model is trained to predict in this batch."""
    return int((torch.as_tensor(batch["labels"]) == eos_token_id).sum())


def eos_in_input(batch: dict, eos_token_id: int) -> int:
    """How many real (not padding) end-of-sequence tokens the batch holds."""
    ids = torch.as_tensor(batch["input_ids"])
    real = kinds(batch) != PADDING
    return int(((ids == eos_token_id) & real).sum())


def sft_labels(tokenizer, row: dict) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one conversational prompt-completion row, as trl 1.16 builds them.

    trl tokenizes the prompt alone with the assistant turn opened (``add_generation_prompt``)
    and the prompt followed by the completion; the completion's tokens are those after the
    common prefix, and only they carry loss. (tests/test_batches.py checks this against the
    SFTTrainer itself.)
    """
    tokens = prompt_completion(tokenizer, row)
    return list(tokens.ids), [IGNORE_INDEX] * tokens.start + list(tokens.ids[tokens.start :])


def trl_collator(tokenizer, *, padding_free: bool = False, pad_to_multiple_of: int | None = None):
    """trl 1.16's SFT collator, as ``SFTTrainer`` builds it for text data.

    It pads ``input_ids`` with the padding token and ``labels`` with -100, by position:
    it never looks at which token ids the labels hold. With ``padding_free=True`` it
    concatenates the batch into one row and returns ``position_ids`` that restart at 0
    for each sequence instead of an attention mask.
    """
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(
        pad_token_id=tokenizer.pad_token_id,
        padding_free=padding_free,
        pad_to_multiple_of=pad_to_multiple_of,
    )


def sorted_by_length(dataset):
    """The rows of a prepared data set, shortest first (what grouping by length approximates)."""
    order = sorted(range(len(dataset)), key=lambda i: len(dataset[i]["input_ids"]))
    return dataset.select(order)


@torch.no_grad()
def packed_logits_gap(model, sequences: Sequence[Sequence[int]], *, restart_positions: bool):
    """Largest difference between the logits of the last sequence run alone and run packed.

    The sequences are concatenated into one row. With ``restart_positions=True`` the row
    gets position ids that restart at 0 for each sequence and no attention mask, as in
    trl's padding-free batches (transformers then keeps each sequence's attention inside
    itself); otherwise it is one long sequence whose tokens can see everything before them.
    """
    device = next(model.parameters()).device
    with eval_mode(model):
        last = torch.tensor([list(sequences[-1])], device=device)
        alone = model(input_ids=last).logits[0].float()
        row = torch.tensor([[t for s in sequences for t in s]], device=device)
        kwargs = {}
        if restart_positions:
            kwargs["position_ids"] = torch.cat(
                [torch.arange(len(s), device=device) for s in sequences]
            )[None]
        else:
            kwargs["attention_mask"] = torch.ones_like(row)
        packed = model(input_ids=row, **kwargs).logits[0, -len(sequences[-1]) :].float()
        return float((packed - alone).abs().max())


# ------------------------------------------------------------------ as text
_LOSS_OPEN, _LOSS_CLOSE = "⟦", "⟧"


def _visible(piece: str) -> str:
    return piece.replace("\n", "↵\n")


def mark_loss(tokenizer, batch: dict, row: int = 0, *, show_padding: bool = True) -> str:
    """One example of a batch as text, with the tokens that carry loss between ⟦ and ⟧.

    Newlines show as ↵ (followed by a real line break); padding is summarised at the end.
    """
    ids = _row(batch, "input_ids", row).tolist()
    k = kinds({key: batch[key] for key in ("labels", "attention_mask") if key in batch})[row]
    out, inside, pads = [], False, 0
    for token_id, kind in zip(ids, k.tolist(), strict=True):
        if kind == PADDING:
            pads += 1
            continue
        if kind == LOSS and not inside:
            out.append(_LOSS_OPEN)
            inside = True
        elif kind != LOSS and inside:
            out.append(_LOSS_CLOSE)
            inside = False
        out.append(_visible(tokenizer.decode([token_id])))
    if inside:
        out.append(_LOSS_CLOSE)
    text = "".join(out)
    if show_padding and pads:
        text += f"{' ' if not text.endswith(chr(10)) else ''}+ {pads} padding"
    return text


def decode_by_kind(tokenizer, batch: dict, row: int = 0) -> dict[str, str]:
    """The tokens of one example that carry loss, and those that do not, decoded separately."""
    ids = _row(batch, "input_ids", row)
    k = kinds(batch)[row]
    return {
        "loss": tokenizer.decode(ids[k == LOSS].tolist()),
        "no loss": tokenizer.decode(ids[k == CONTEXT].tolist()),
        "padding": tokenizer.decode(ids[k == PADDING].tolist()),
    }


# ------------------------------------------------------------------ pictures
def plot_batch(batch: dict, ax=None, *, title: str | None = None, legend: bool = True):
    """Heat-map of a batch: token positions across, examples down; colour = padding/context/loss.

    In a padding-free batch (one long row, with ``position_ids``) white lines mark where
    each packed sequence starts.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    k = kinds(batch).numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(10, max(1.2, 0.35 * k.shape[0] + 0.8)))
    cmap = ListedColormap([KIND_COLOURS[PADDING], KIND_COLOURS[CONTEXT], KIND_COLOURS[LOSS]])
    ax.imshow(k, cmap=cmap, norm=BoundaryNorm([-0.5, 0.5, 1.5, 2.5], 3), aspect="auto")
    if "position_ids" in batch and "attention_mask" not in batch:
        pos = torch.as_tensor(batch["position_ids"])
        for r in range(pos.shape[0]):
            for start in (pos[r] == 0).nonzero().flatten().tolist()[1:]:
                ax.plot([start - 0.5] * 2, [r - 0.5, r + 0.5], color="white", linewidth=1.5)
    ax.set_xlabel("token position")
    ax.set_ylabel("example")
    ax.set_yticks(range(k.shape[0]))
    if title:
        ax.set_title(title)
    if legend:
        handles = [
            Patch(color=KIND_COLOURS[i], label=KIND_NAMES[i]) for i in (CONTEXT, LOSS, PADDING)
        ]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax


def plot_pad_shares(shares: dict[str, float], ax=None, *, title: str = "Share of padding"):
    """Horizontal bars: the share of positions that are padding, one bar per batching strategy."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.5 * len(shares) + 1))
    names = list(shares)
    values = [100 * shares[n] for n in names]
    bars = ax.barh(names, values, color=KIND_COLOURS[PADDING], edgecolor="#636363")
    for bar, value in zip(bars, values, strict=True):
        ax.text(
            bar.get_width() + 1, bar.get_y() + bar.get_height() / 2, f"{value:.1f}%", va="center"
        )
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("padding, % of all positions")
    ax.set_title(title)
    return ax


# ------------------------------------------------------------------ data for the classic recipe
def conversation_texts(tokenizer, dataset) -> list[str]:
    """Each prompt + completion row rendered as one chat-formatted string."""
    return [
        tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        for row in dataset
    ]


def tokenize_conversations(tokenizer, dataset):
    """A data set of ``input_ids``/``attention_mask``: whole conversations, chat template applied.

    This is what a plain ``transformers.Trainer`` recipe trains on: no prompt/completion
    split, so every real token is a candidate for the loss and the collator decides.
    """
    from datasets import Dataset

    texts = conversation_texts(tokenizer, dataset)
    enc = tokenizer(texts, add_special_tokens=False)
    return Dataset.from_dict(
        {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    )


def with_pad_token(tokenizer, pad_token: str):
    """A copy of the tokenizer whose padding token is `pad_token` (the original is untouched)."""
    if pad_token not in tokenizer.get_vocab():
        raise ValueError(f"{pad_token!r} is not in the tokenizer's vocabulary.")
    other = copy.deepcopy(tokenizer)
    other.pad_token = pad_token
    return other


def classic_collator(tokenizer):
    """transformers' ``DataCollatorForLanguageModeling(mlm=False)``: the classic causal-LM collator.

    It pads the batch, copies ``input_ids`` into ``labels`` and sets to -100 every label
    whose token id *equals the padding token's id*, wherever it is. When the padding token
    is the end-of-sequence token, that also removes the loss from every real EOS.
    """
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(tokenizer, mlm=False)


def lm_trainer(model, args, train_dataset, collator):
    """A plain ``transformers.Trainer`` for causal-LM training with the given collator.

    `args` can be the course's ``sft_config(...)``: an ``SFTConfig`` is a
    ``TrainingArguments``, and the plain ``Trainer`` ignores the SFT-only fields.
    """
    from transformers import Trainer

    return Trainer(model=model, args=args, train_dataset=train_dataset, data_collator=collator)


# ------------------------------------------------------------------ did it learn to stop?
@torch.no_grad()
def eos_probability(model, tokenizer, rows: Sequence[dict]) -> list[float]:
    """For each prompt + completion row: the probability of EOS right after the reference answer.

    Teacher-forced (the reference answer is fed in, no generation), so it measures exactly
    what the loss on the answer's final EOS would train.
    """
    device = next(model.parameters()).device
    probs = []
    with eval_mode(model):
        for row in rows:
            prompt = tokenizer.apply_chat_template(
                row["prompt"], tokenize=False, add_generation_prompt=True
            )
            answer = row["completion"][0]["content"]
            ids = tokenizer(prompt + answer, add_special_tokens=False, return_tensors="pt")
            logits = model(**ids.to(device)).logits[0, -1]
            probs.append(float(torch.softmax(logits.float(), -1)[tokenizer.eos_token_id]))
    return probs


def stopped(answers: Sequence[str], eos_token: str) -> list[bool]:
    """Which raw answers (decoded with special tokens kept) end with the EOS token."""
    return [a.rstrip().endswith(eos_token) for a in answers]


# ------------------------------------------------------------------ chat templates and trl
def supports_assistant_only_loss(tokenizer) -> bool:
    """Whether trl 1.16 can train this tokenizer's chat template with ``assistant_only_loss=True``.

    trl needs ``{% generation %}`` markers in the template; when they are missing it looks
    for a patched copy among the templates it knows, and raises if there is none.
    """
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if has_generation_markers(tokenizer.chat_template):
        return True
    try:
        return get_training_chat_template(tokenizer) is not None
    except ValueError:
        return False


def with_generation_tags(tokenizer):
    """A copy of SmolLM2's tokenizer whose chat template marks the assistant's tokens."""
    other = copy.deepcopy(tokenizer)
    other.chat_template = SMOLLM2_TEMPLATE_WITH_GENERATION_TAGS
    return other


def assistant_mask(tokenizer, messages: list[dict]) -> list[int]:
    """1 for each token the assistant wrote, per the template's generation markers."""
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    return list(out["assistant_masks"])
