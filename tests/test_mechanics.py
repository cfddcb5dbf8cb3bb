"""The shared mechanics: eval_mode restores what it changes, the prompt/completion boundary
matches the chat template's text, and sizes are written one way."""

from __future__ import annotations

import pytest
import torch

from helpers import chat, evaluation, formatting, generation, modes


class _Tokenizer:
    padding_side = "right"


def test_eval_mode_switches_and_restores_mode_and_padding_side():
    model, tokenizer = torch.nn.Linear(2, 2), _Tokenizer()
    model.train()
    with modes.eval_mode(model, tokenizer, padding_side="left"):
        assert model.training is False and tokenizer.padding_side == "left"
    assert model.training is True and tokenizer.padding_side == "right"
    model.eval()
    with modes.eval_mode(model):  # no tokenizer: the mode only
        assert model.training is False
    assert model.training is False


def test_eval_mode_restores_after_an_exception():
    model, tokenizer = torch.nn.Linear(2, 2), _Tokenizer()
    model.train()
    with pytest.raises(KeyError), modes.eval_mode(model, tokenizer, padding_side="left"):
        raise KeyError("boom")
    assert model.training is True and tokenizer.padding_side == "right"


def test_eval_mode_refuses_a_padding_side_it_cannot_set():
    model = torch.nn.Linear(2, 2)
    with (
        pytest.raises(ValueError, match="one of"),
        modes.eval_mode(model, _Tokenizer(), padding_side="top"),
    ):
        pass
    with (
        pytest.raises(ValueError, match="needs the tokenizer"),
        modes.eval_mode(model, padding_side="left"),
    ):
        pass
    assert model.training is True


def test_generation_and_perplexity_leave_model_and_tokenizer_as_they_were(tiny):
    model, tokenizer = tiny
    was_training, side = model.training, tokenizer.padding_side
    model.train()
    tokenizer.padding_side = "right"
    try:
        generation.generate(model, tokenizer, ["Hi", "Hello there"], max_new_tokens=2)
        assert model.training is True and tokenizer.padding_side == "right"
        tokenizer.padding_side = "left"
        evaluation.perplexity(model, tokenizer, ["a short text", "and another one"])
        assert model.training is True and tokenizer.padding_side == "left"
    finally:
        model.train(was_training)
        tokenizer.padding_side = side


def test_the_completion_starts_after_the_rendered_prompt(tiny, yoda):
    _, tokenizer = tiny
    for row in yoda["test"].select(range(5)):
        split = chat.prompt_completion(tokenizer, row)
        assert split.prompt_is_prefix and chat.prompt_length(tokenizer, row) == split.start
        # an independent oracle: the text of the prompt with the assistant turn opened
        text = tokenizer.apply_chat_template(
            row["prompt"], tokenize=False, add_generation_prompt=True
        )
        assert tokenizer.decode(split.ids[: split.start]) == text
        answer = tokenizer.decode(split.ids[split.start :])
        assert answer.startswith(row["completion"][0]["content"] + tokenizer.eos_token)


def test_a_prompt_rendered_differently_inside_the_chat_ends_at_the_common_prefix():
    class Template:
        def apply_chat_template(self, messages, tokenize, return_dict, add_generation_prompt=False):
            if add_generation_prompt:
                return {"input_ids": [1, 2, 3, 9]}
            return {"input_ids": [1, 2, 3, 4, 5]}

    split = chat.prompt_completion(Template(), {"prompt": [], "completion": []})
    assert split.start == 3 and not split.prompt_is_prefix and split.ids == [1, 2, 3, 4, 5]


def test_megabytes_are_decimal_with_separators():
    assert formatting.megabytes(None) == "n/a"
    assert formatting.megabytes(1_669_000_000) == "1,669 MB"
    assert formatting.megabytes(538_060_032, 1) == "538.1 MB"


def test_encoded_batches_cut_pad_and_pass_the_tokenizer_options(tiny):
    _, tokenizer = tiny
    texts = ["one", "two words", "three words here", "four", "a much longer fifth text"]
    batches = list(
        generation.encoded_batches(tokenizer, texts, 2, "cpu", max_length=3, truncation=True)
    )
    assert [b["input_ids"].shape[0] for b in batches] == [2, 2, 1]
    for batch, start in zip(batches, (0, 2, 4), strict=True):
        lengths = [min(len(tokenizer(t)["input_ids"]), 3) for t in texts[start : start + 2]]
        assert batch["input_ids"].shape[1] == max(lengths)  # padded to the batch's longest
        assert batch["attention_mask"].sum(1).tolist() == lengths


def test_lazy_exports_import_on_first_use_and_name_what_is_missing():
    import subprocess
    import sys

    from helpers import lazy

    getattr_, dir_ = lazy.lazy_exports(
        "helpers", {"megabytes": "formatting", "mb": "formatting:megabytes"}
    )
    assert getattr_("mb") is getattr_("megabytes") is formatting.megabytes
    assert dir_() == ["mb", "megabytes"]
    with pytest.raises(AttributeError, match="'helpers' has no attribute 'nothing'"):
        getattr_("nothing")
    code = (
        "import sys, helpers.memory as m; assert 'helpers.memory.oom' not in sys.modules; "
        "m.explain_oom; assert 'helpers.memory.oom' in sys.modules; print(sorted(dir(m))[:2])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['Advice', 'LABELS']"
