"""helpers.batches: label masks, padding counts and the PAD = EOS pitfall, on real collators."""

from __future__ import annotations

import matplotlib
import pytest
import torch

import helpers
from helpers import batches
from helpers.generation import generate

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def prepared(tiny, yoda, tmp_path_factory):
    """(trainer, tokenizer) of an SFTTrainer built by the course on 6 Yoda rows."""
    model, tokenizer = tiny
    args = helpers.sft_config(str(tmp_path_factory.mktemp("sft")), max_steps=1, device="cpu")
    trainer = helpers.build_trainer(model, tokenizer, yoda["train"].select(range(6)), args)
    return trainer, tokenizer


def _rows(trainer, n):
    return [trainer.train_dataset[i] for i in range(n)]


def test_sft_labels_are_what_the_sft_trainer_builds(prepared, yoda):
    trainer, tokenizer = prepared
    for i in range(6):
        ids, labels = batches.sft_labels(tokenizer, yoda["train"][i])
        assert trainer.train_dataset[i]["input_ids"] == ids
        assert trainer.train_dataset[i]["labels"] == labels


def test_loss_is_on_the_answer_and_its_end_of_turn(prepared, yoda):
    trainer, tokenizer = prepared
    batch = trainer.data_collator(_rows(trainer, 4))
    for row in range(4):
        parts = batches.decode_by_kind(tokenizer, batch, row)
        assert parts["loss"] == yoda["train"][row]["yoda"] + "<|im_end|>\n"
        assert parts["no loss"].startswith("<|im_start|>system\nTranslate into Yoda-speak.")
        assert parts["no loss"].endswith("<|im_start|>assistant\n")
    # trl pads the labels with -100 by position: every answer's EOS keeps its loss
    assert batches.eos_with_loss(batch, tokenizer.eos_token_id) == 4
    assert batches.eos_in_input(batch, tokenizer.eos_token_id) == 12  # 3 turns x 4 rows


def test_counts_add_up(prepared):
    trainer, _ = prepared
    rows = _rows(trainer, 5)
    batch = trainer.data_collator(rows)
    lengths = [len(r["input_ids"]) for r in rows]
    c = batches.count(batch)
    assert c.total == 5 * max(lengths)
    assert c.real == sum(lengths)
    assert c.padding == 5 * max(lengths) - sum(lengths) > 0
    assert c.loss == sum(sum(label != -100 for label in r["labels"]) for r in rows)
    assert batches.pad_share(batch) == pytest.approx(c.padding / c.total)
    assert int(batches.loss_mask(batch).sum()) == c.loss
    epoch = batches.count_epoch(trainer.train_dataset, trainer.data_collator, batch_size=4)
    assert epoch.batches == 2
    assert epoch.real == sum(len(r["input_ids"]) for r in _rows(trainer, 6))
    assert "padding" in str(epoch)
    with pytest.raises(ValueError, match="empty"):
        batches.count_epoch(trainer.train_dataset.select([]), trainer.data_collator, 4)


def test_mark_loss_brackets_exactly_the_loss_tokens(prepared, yoda):
    trainer, tokenizer = prepared
    batch = trainer.data_collator(_rows(trainer, 2))
    lengths = [len(r["input_ids"]) for r in _rows(trainer, 2)]
    shorter = lengths.index(min(lengths))
    text = batches.mark_loss(tokenizer, batch, shorter)
    answer = yoda["train"][shorter]["yoda"]
    assert f"<|im_start|>assistant↵\n⟦{answer}<|im_end|>↵\n⟧" in text
    assert text.count("⟦") == 1 and text.count("⟧") == 1
    if lengths[0] != lengths[1]:
        assert text.endswith(f"+ {max(lengths) - min(lengths)} padding")
    assert "padding" not in batches.mark_loss(tokenizer, batch, shorter, show_padding=False)


def test_classic_collator_drops_the_loss_of_every_eos_when_pad_is_eos(tiny, yoda):
    _, tokenizer = tiny
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    data = batches.tokenize_conversations(tokenizer, yoda["train"].select(range(4)))
    rows = [data[i] for i in range(4)]
    pitfall = batches.classic_collator(tokenizer)(rows)
    assert batches.eos_in_input(pitfall, tokenizer.eos_token_id) == 12
    assert batches.eos_with_loss(pitfall, tokenizer.eos_token_id) == 0

    other = batches.with_pad_token(tokenizer, "<|endoftext|>")
    assert tokenizer.pad_token == "<|im_end|>"  # the original is untouched
    fixed = batches.classic_collator(other)(rows)
    assert batches.eos_with_loss(fixed, tokenizer.eos_token_id) == 12
    # padding still carries no loss, and it is the same padding as before
    assert torch.equal(fixed["attention_mask"], pitfall["attention_mask"])
    assert batches.count(fixed).padding == batches.count(pitfall).padding > 0
    assert not batches.loss_mask(fixed)[fixed["attention_mask"] == 0].any()
    with pytest.raises(ValueError, match="vocabulary"):
        batches.with_pad_token(tokenizer, "<|no such token|>")


def test_padding_free_batches_have_no_padding_and_plot_their_boundaries(prepared):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    trainer, tokenizer = prepared
    rows = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in _rows(trainer, 3)]
    flat = DataCollatorForLanguageModeling(tokenizer.pad_token_id, padding_free=True)(rows)
    assert flat["input_ids"].shape[0] == 1
    assert batches.count(flat).padding == 0
    ax = batches.plot_batch(flat, title="flat")
    assert len(ax.lines) == 2  # boundaries between 3 sequences
    padded = trainer.data_collator(_rows(trainer, 3))
    ax = batches.plot_batch(padded, legend=False)
    assert ax.get_images()[0].get_array().shape == tuple(padded["input_ids"].shape)
    ax = batches.plot_pad_shares({"padding": 0.25, "packing": 0.0})
    assert [t.get_text() for t in ax.texts] == ["25.0%", "0.0%"]


def test_token_display(tiny):
    _, tokenizer = tiny
    assert batches.split_tokens(tokenizer, "Hello world") == "Hello| world"
    shown = batches.show_tokens(tokenizer, "<|im_end|>Hi")
    assert shown.splitlines()[0] == "2 tokens"
    assert "'<|im_end|>'" in shown and f" {tokenizer.eos_token_id:>6}  " in shown


def test_smollm2_template_needs_generation_tags_for_assistant_only_loss(tiny):
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    _, tokenizer = tiny
    assert not batches.supports_assistant_only_loss(tokenizer)
    tagged = batches.with_generation_tags(tokenizer)
    assert tokenizer.chat_template != tagged.chat_template  # the original is untouched
    assert batches.supports_assistant_only_loss(tagged)
    assert is_chat_template_stop_token_trained(tagged)
    conversations = [
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Farewell."},
        ],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
    ]
    for messages in conversations:
        for gen in (False, True):  # the same text as the original template
            assert tagged.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=gen
            ) == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
    ids = tagged.apply_chat_template(conversations[0], tokenize=True, return_dict=True)["input_ids"]
    mask = batches.assistant_mask(tagged, conversations[0])
    assert tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m]) == (
        "Hello.<|im_end|>Farewell.<|im_end|>"
    )


def test_eos_probability_and_stopped(tiny, yoda):
    model, tokenizer = tiny
    rows = list(yoda["test"].select(range(3)))
    probs = batches.eos_probability(model, tokenizer, rows)
    assert len(probs) == 3 and all(0.0 <= p <= 1.0 for p in probs)
    assert not model.training
    assert batches.stopped(["Hi.<|im_end|>", "Hi. Hi", "Hi.<|im_end|> "], "<|im_end|>") == [
        True,
        False,
        True,
    ]


def test_generate_can_keep_special_tokens_and_cuts_after_eos(tiny):
    model, tokenizer = tiny
    prompts = ["Hi", "Hello there, how are you?"]
    plain = generate(model, tokenizer, prompts, max_new_tokens=5)

    def force_eos_in_first_row(module, inputs, output):
        output[0, :, tokenizer.eos_token_id] += 1e4
        return output

    kept_plain = generate(model, tokenizer, prompts, max_new_tokens=5, skip_special_tokens=False)
    handle = model.lm_head.register_forward_hook(force_eos_in_first_row)
    try:
        forced = generate(model, tokenizer, prompts, max_new_tokens=5, skip_special_tokens=False)
    finally:
        handle.remove()
    assert forced[0] == "<|im_end|>"  # stopped at once; the padding after it is cut
    assert forced[1] == kept_plain[1]  # the other row is untouched
    assert batches.stopped(forced, tokenizer.eos_token) == [
        True,
        kept_plain[1].endswith("<|im_end|>"),
    ]
    for p, k in zip(plain, kept_plain, strict=True):  # the same tokens, specials kept or not
        if not any(s in k for s in tokenizer.all_special_tokens):
            assert k == p


def test_tokenized_data_is_used_as_is(tiny, tmp_path):
    from datasets import Dataset

    from helpers.data import check_sft_format

    model, tokenizer = tiny
    ids = tokenizer("Narrow, the road was.", add_special_tokens=False)["input_ids"]
    plain = Dataset.from_list([{"input_ids": ids}])
    assert check_sft_format(plain) == "tokenized"
    args = helpers.sft_config(str(tmp_path), max_steps=1, device="cpu")
    row = helpers.build_trainer(model, tokenizer, plain, args).train_dataset[0]
    assert row["input_ids"] == ids  # no template, no EOS appended
    assert row["labels"] == ids  # every token carries loss
    own = [-100] * 3 + ids[3:]
    labelled = Dataset.from_list([{"input_ids": ids, "labels": own}])
    assert helpers.build_trainer(model, tokenizer, labelled, args).train_dataset[0]["labels"] == own


# ------------------------------------------------------------------ bucketed batch order
def _padding(lengths, order, batch_size):
    """Padding positions of an epoch when each batch is padded to its longest example."""
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return sum(max(lengths[i] for i in g) * len(g) - sum(lengths[i] for i in g) for g in groups)


def test_the_sampler_lives_beside_the_trainer_and_chapter_04_still_finds_it():
    from helpers import sampling

    assert batches.bucketed_order is sampling.bucketed_order
    assert batches.BucketedSampler is sampling.BucketedSampler


def test_the_sampler_reshuffles_each_epoch():
    from helpers import sampling

    lengths = list(range(10, 50))
    sampler = sampling.BucketedSampler(lengths, 4, seed=2)
    first, second = list(sampler), list(sampler)
    assert len(sampler) == 40 and sorted(first) == sorted(second) == list(range(40))
    assert first == sampling.bucketed_order(lengths, 4, seed=2)
    assert second == sampling.bucketed_order(lengths, 4, seed=3) != first


def test_bucketed_order_is_a_seeded_permutation_with_little_padding():
    lengths = [
        int(x) for x in torch.randint(20, 90, (1203,), generator=torch.Generator().manual_seed(1))
    ]
    order = batches.bucketed_order(lengths, 8, seed=3)
    assert sorted(order) == list(range(1203))
    assert order == batches.bucketed_order(lengths, 8, seed=3)
    assert order != batches.bucketed_order(lengths, 8, seed=4)
    shuffled = torch.randperm(1203, generator=torch.Generator().manual_seed(3)).tolist()
    assert _padding(lengths, order, 8) < 0.1 * _padding(lengths, shuffled, 8)
    # the batches come in random order, not longest (or shortest) first
    longest = [max(lengths[i] for i in order[k : k + 8]) for k in range(0, 1200, 8)]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)
    assert len(order[1200:]) == 3  # the short batch stays last


def test_bucketed_order_refuses_an_empty_batch():
    with pytest.raises(ValueError, match="batch_size=0"):
        batches.bucketed_order([3, 4], 0)


def test_bucketed_trainer_feeds_bucketed_batches(tiny, yoda, tmp_path):
    model, tokenizer = tiny
    args = helpers.sft_config(str(tmp_path), max_steps=1, per_device_train_batch_size=4, seed=5)
    data = yoda["train"].select(range(40))
    bucketed = helpers.build_trainer(model, tokenizer, data, args, batch_order="bucketed")
    shuffled = helpers.build_trainer(model, tokenizer, data, args, batch_order="random")
    lengths = [len(ids) for ids in bucketed.train_dataset["input_ids"]]
    expected = batches.bucketed_order(lengths, 4, seed=5)
    loader = list(bucketed.get_train_dataloader())
    assert [b["input_ids"].shape[1] for b in loader] == [
        max(lengths[i] for i in expected[k : k + 4]) for k in range(0, 40, 4)
    ]
    padded = sum(int((b["attention_mask"] == 0).sum()) for b in loader)
    random_padded = sum(
        int((b["attention_mask"] == 0).sum()) for b in shuffled.get_train_dataloader()
    )
    assert padded < random_padded


def test_unknown_batch_order_is_refused(tiny, yoda):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="'sorted' is not one of"):
        helpers.build_trainer(model, tokenizer, yoda["train"], batch_order="sorted")
