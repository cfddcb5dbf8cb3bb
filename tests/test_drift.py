"""The drift check: usages found by parsing, problems found in the installed libraries."""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import types
import warnings

import pytest

from helpers import drift


def _usages(source: str, libraries=drift.LIBRARIES):
    return drift.find_usages([("example.py", [("example.py", source)])], libraries)


def _targets(usages):
    return {u.target: u for u in usages if u.call}


def test_the_course_has_no_drift_against_the_pinned_libraries():
    usages = drift.find_usages()
    calls = {(u.target, k) for u in usages for k in u.keywords}
    # The parser reaches the calls that matter, including keywords passed through **dict.
    assert ("trl.SFTConfig", "max_length") in calls
    assert ("trl.SFTConfig", "activation_checkpointing") in calls
    assert ("peft.LoraConfig", "target_modules") in calls
    assert ("transformers.BitsAndBytesConfig", "bnb_4bit_quant_type") in calls
    assert ("transformers.AutoModelForCausalLM.from_pretrained", "dtype") in calls
    assert ("trl.SFTTrainer", "processing_class") in calls  # through the course's subclass
    assert any(u.where.startswith("notebooks/") for u in usages)
    problems = drift.check(usages)
    assert problems == [], "\n".join(p.line() for p in problems)


def test_each_acknowledged_deprecation_is_still_used_and_still_deprecated():
    calls = {(u.target, k) for u in drift.find_usages() for k in u.keywords}
    for (target, keyword), reason in drift.ACKNOWLEDGED.items():
        assert (target, keyword) in calls, f"{target}({keyword}=) is no longer used: drop it"
        found = drift.check_keyword(drift.resolve(target), keyword)
        assert found and found[0] == "deprecated", (
            f"{target}({keyword}=) is no longer deprecated: drop it from ACKNOWLEDGED ({reason})"
        )


def test_aliases_local_imports_and_kwargs_dicts_are_resolved():
    source = """
import helpers
import torch as T
from trl import SFTConfig as Cfg

def build():
    from transformers import DataCollatorForLanguageModeling
    opts = {"output_dir": "x", "max_length": 64}
    opts["seed"] = 1
    DataCollatorForLanguageModeling(tokenizer=None, mlm=False)
    return Cfg(**opts, bf16=False)

def other():
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
    DataCollatorForLanguageModeling(pad_token_id=0)

x = T.nn.functional.cross_entropy
tokenizer.apply_chat_template(m, tokenize=False)
helpers.generate(model, ["q"])
"""
    usages = _usages(source)
    calls = {(u.target, u.keywords) for u in usages if u.call}
    (config,) = [set(k) for t, k in calls if t == "trl.SFTConfig"]
    assert config == {"output_dir", "max_length", "seed", "bf16"}
    assert ("transformers.DataCollatorForLanguageModeling", ("tokenizer", "mlm")) in calls
    assert (
        "trl.trainer.sft_trainer.DataCollatorForLanguageModeling",
        ("pad_token_id",),
    ) in calls
    names = {u.target for u in usages}
    assert "torch.nn.functional.cross_entropy" in names
    assert "transformers.PreTrainedTokenizerBase.apply_chat_template" in names
    assert "transformers.GenerationMixin.generate" not in names  # helpers.generate is ours
    literals = {u.target: dict(u.literals) for u in usages if u.call}
    assert literals["trl.SFTConfig"] == {"bf16": False}


def test_a_course_subclass_passes_its_other_keywords_to_the_library_class():
    source = """
def trainer_class():
    from trl import SFTTrainer

    class Course(SFTTrainer):
        def __init__(self, *args, fast=True, **kwargs):
            super().__init__(*args, **kwargs)

    return Course

def build(model):
    return trainer_class()(fast=False, model=model, tokenizer=None)
"""
    calls = [(u.target, u.keywords) for u in _usages(source) if u.call]
    assert calls == [("trl.SFTTrainer", ("model", "tokenizer"))]
    (problem,) = drift.check(_usages(source))
    assert (problem.target, problem.keyword, problem.kind) == (
        "trl.SFTTrainer",
        "tokenizer",
        "unknown keyword",
    )


def test_notebook_cells_share_their_imports(tmp_path):
    notebook = {
        "cells": [
            {"cell_type": "code", "source": "%matplotlib inline\nfrom peft import LoraConfig"},
            {"cell_type": "markdown", "source": "text"},
            {"cell_type": "code", "source": "!pip list\nLoraConfig(r=4)"},
        ]
    }
    (tmp_path / "helpers").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "00_x.ipynb").write_text(json.dumps(notebook))
    usages = drift.find_usages(drift.course_sources(tmp_path))
    (call,) = [u for u in usages if u.call]
    assert (call.target, call.keywords, call.where) == (
        "peft.LoraConfig",
        ("r",),
        "notebooks/00_x.ipynb cell 2",
    )


# A fake library: what a future release of a real one could look like.
@dataclasses.dataclass
class FakeConfig:
    new_name: int = 0
    old_name: int | None = dataclasses.field(
        default=None, metadata={"help": "Deprecated alias of `new_name`, removed in v9."}
    )
    reduce: bool = dataclasses.field(
        default=False, metadata={"help": "Whether `old_name` is deprecated makes no difference."}
    )


def _legacy_notice(name):
    warnings.warn(f"`{name}` is deprecated, use `size` instead.", FutureWarning, stacklevel=3)


class WarningConfig:
    """Its deprecation is only visible when it is built (the warning is raised elsewhere)."""

    def __init__(self, size=1, legacy_size=None):
        if legacy_size is not None:
            _legacy_notice("legacy_size")


def fake_train(model, *, steps=1, **kwargs):
    steps = kwargs.pop("num_steps", steps)  # kept for BC
    return model


def fake_old_function():
    warnings.warn("fake_old_function is deprecated; use fake_train.", DeprecationWarning, 2)


@pytest.fixture
def fakelib(monkeypatch):
    module = types.ModuleType("fakelib")
    module.FakeConfig = FakeConfig
    module.WarningConfig = WarningConfig
    module.fake_train = fake_train
    module.fake_old_function = fake_old_function
    monkeypatch.setitem(sys.modules, "fakelib", module)
    return module


def _problems(source):
    usages = _usages(source, libraries=("fakelib",))
    return {(p.target, p.keyword): p.kind for p in drift.check(usages)}


def test_a_removed_keyword_a_deprecated_one_and_a_missing_name_are_reported(fakelib):
    found = _problems(
        "import fakelib\n"
        "from fakelib import FakeConfig\n"
        "FakeConfig(new_name=1, old_name=2, max_seq_length=3, reduce=True)\n"
        "fakelib.fake_train(None, steps=2)\n"
        "fakelib.SetupChatFormat()\n"
    )
    assert found == {
        ("fakelib.FakeConfig", "old_name"): "deprecated",
        ("fakelib.FakeConfig", "max_seq_length"): "unknown keyword",
        ("fakelib.SetupChatFormat", None): "missing",
    }


def test_deprecations_seen_only_at_run_time_or_in_kwargs_are_reported(fakelib):
    found = _problems(
        "from fakelib import WarningConfig, fake_train, fake_old_function\n"
        "WarningConfig(size=2)\n"
        "WarningConfig(legacy_size=2)\n"
        "fake_train(None, num_steps=2, anything=1)\n"
        "fake_old_function()\n"
    )
    assert found == {
        ("fakelib.WarningConfig", "legacy_size"): "deprecated",
        ("fakelib.fake_train", "num_steps"): "deprecated",
        ("fakelib.fake_old_function", None): "deprecated",
    }


def test_a_keyword_check_on_a_real_config_sees_the_deprecated_alias():
    from trl import SFTConfig

    assert drift.check_keyword(SFTConfig, "gradient_checkpointing", True)[0] == "deprecated"
    assert drift.check_keyword(SFTConfig, "activation_checkpointing", True) is None
    assert drift.check_keyword(SFTConfig, "max_seq_length")[0] == "unknown keyword"


def test_verdicts_give_one_line_per_library():
    usages = [
        drift.Usage("trl.SFTConfig", "a.py:1", ("max_length",), call=True),
        drift.Usage("peft.LoraConfig", "a.py:2", ("r",), call=True),
    ]
    problems = [
        drift.Problem("trl.SFTConfig", "max_length", "unknown keyword", "gone"),
        drift.Problem("trl.SFTTrainer", None, "missing", "gone"),
    ]
    lines = drift.verdicts(usages, problems, {"trl": "9.0.0", "peft": "1.0.0", "torch": None})
    assert lines[0].startswith("trl 9.0.0: 2 problems: trl.SFTConfig(max_length=): unknown")
    assert lines[1] == "peft 1.0.0: OK (1 names, 1 keywords checked)"
    assert lines[2] == "torch (not installed): OK (0 names, 0 keywords checked)"


def test_report_records_versions_date_and_verdicts(tmp_path):
    usages = [drift.Usage("trl.SFTConfig", "a.py:1", ("max_length",), call=True)]
    problems = [
        drift.Problem("trl.SFTConfig", "max_length", "unknown keyword", "gone", ("a.py:1",))
    ]
    seen = {"trl": "9.0.0", "torch": "2.13.0+cpu", "peft": "1.0.0"}
    lines = drift.verdicts(usages, problems, seen)
    when = datetime.datetime(2026, 11, 29, 1, 0, tzinfo=datetime.timezone.utc)
    tests = {
        "exit_code": 1,
        "tests": 10,
        "failures": 2,
        "skipped": 1,
        "failed": ["t::x", "t::y"],
        "also_fail_with_pins": ["t::y"],
        "deselected": ["t::pins"],
    }
    json_path, md_path = drift.write_report(
        tmp_path,
        seen,
        lines,
        problems,
        usages,
        tests,
        when,
        {"trl": "9.1.0", "torch": "2.15.0", "peft": "1.0.0"},
    )
    data = json.loads(json_path.read_text())
    assert data["versions"] == seen
    assert data["newest_on_index"]["torch"] == "2.15.0"
    assert data["date"].startswith("2026-11-29T01:00")
    assert data["problems"][0]["keyword"] == "max_length"
    text = md_path.read_text()
    assert "| trl | 9.0.0 | 9.1.0 | 1 problem: trl.SFTConfig(max_length=)" in text
    assert "unit tests: 7 passed, 2 failed, 1 skipped: t::x, t::y (fails with the pins too)" in text
    assert "- `t::pins`" in text
    assert "newest: trl 9.0.0 (newest: 9.1.0), torch 2.13.0+cpu (newest: 2.15.0). `make" in text
    assert "another package's bound." in text


def test_the_committed_report_covers_every_library():
    data = json.loads((drift.DRIFT_DIR / "report.json").read_text(encoding="utf-8"))
    assert set(data["versions"]) == set(drift.LIBRARIES)
    assert len(data["verdicts"]) == len(drift.LIBRARIES)
    datetime.datetime.fromisoformat(data["date"])
    assert data["unit_tests"] is not None and "tests" in data["unit_tests"]


def test_newest_releases_reads_pip_index_and_tolerates_no_answer(tmp_path):
    fake = tmp_path / "python"
    # called as: python -m pip index versions NAME --disable-pip-version-check
    fake.write_text(
        '#!/bin/sh\ncase "$5" in\n  trl) echo "trl (9.1.0)"; echo "Available versions: 9.1.0";;\n'
        "  *) echo 'ERROR: no network' >&2; exit 1;;\nesac\n"
    )
    fake.chmod(0o755)
    assert drift.newest_releases(("trl", "peft"), python=str(fake)) == {
        "trl": "9.1.0",
        "peft": None,
    }


def test_unit_test_runs_are_counted_from_pytest_junit(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text("def test_a():\n    pass\n\ndef test_b():\n    assert False\n")
    code, counts = drift._pytest(sys.executable, [str(sample)], tmp_path / "out.xml")
    assert code == 1
    assert (counts["tests"], counts["failures"], counts["skipped"]) == (2, 1, 0)
    assert len(counts["failed"]) == 1 and counts["failed"][0].endswith("test_sample.py::test_b")
