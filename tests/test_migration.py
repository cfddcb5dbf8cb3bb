"""The migration table: every row holds for the pinned libraries, and a stale row is caught."""

from __future__ import annotations

import pytest

from helpers import migration


@pytest.mark.parametrize("row", migration.MIGRATIONS, ids=lambda row: row.old)
def test_row_holds_for_the_installed_libraries(row):
    row.check()  # raises StaleMigration, naming what changed


def test_the_table_covers_the_renames_learners_meet_most():
    pairs = {(row.old.split("=")[0].split("(")[0], row.status) for row in migration.MIGRATIONS}
    for old in (
        "tokenizer",
        "max_seq_length",
        "DataCollatorForCompletionOnlyLM",
        "setup_chat_format",
        "torch_dtype",
        "warmup_ratio",
        "group_by_length",
        "gradient_checkpointing",
        "evaluation_strategy",
        "ConstantLengthDataset",
        "logging_dir",
        # calls in the code of dvgodoy/FineTuningLLMs that break or warn under the pins
        "FORMAT_MAPPING, instructions_formatting_function, conversations_formatting_function",
        "get_keys_to_not_convert",
        "SFTTrainer",
        "prepare_model_for_kbit_training",
        "use_liger",
    ):
        assert any(name == old for name, _ in pairs), old
    assert {row.status for row in migration.MIGRATIONS} == {"removed", "deprecated"}


def test_a_stale_row_is_reported_with_what_changed():
    stale = migration.Migration(
        "SFTConfig",
        "max_length=512",
        "max_len=512",
        "removed",
        "",
        lambda: migration._keyword_gone("trl.SFTConfig", "max_length"),
    )
    gone = migration.Migration(
        "trl", "SFTTrainer", "-", "removed", "", lambda: migration._gone("trl.SFTTrainer")
    )
    deprecated = migration.Migration(
        "SFTConfig",
        "activation_checkpointing=True",
        "-",
        "deprecated",
        "",
        lambda: migration._keyword_deprecated("trl.SFTConfig", "activation_checkpointing"),
    )
    fine = migration.MIGRATIONS[0]
    lines = migration.verify((stale, gone, deprecated, fine))
    assert len(lines) == 3
    assert lines[0].startswith("SFTConfig: max_length=512 -> max_len=512: trl.SFTConfig still")
    assert "trl.SFTTrainer still exists" in lines[1]
    assert "no longer deprecated" in lines[2]


def test_table_and_markdown_show_every_row():
    text = migration.table()
    markdown = migration.markdown()
    for row in migration.MIGRATIONS:
        assert row.old in text and row.new in text
        assert f"`{row.old}`" in markdown.replace("\\|", "|")
    assert "old (removed): tokenizer=tokenizer\n  now: processing_class=tokenizer" in text
    assert markdown.count("\n") == len(migration.MIGRATIONS) + 1
