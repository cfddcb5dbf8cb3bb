"""The drift check: usages found by parsing, problems found in the installed libraries."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import sys
import time
import types
import warnings

import pytest

from helpers import api, pins
from tools import drift


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
        found = api.check_keyword(api.resolve(target), keyword)
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

    assert api.check_keyword(SFTConfig, "gradient_checkpointing", True)[0] == "deprecated"
    assert api.check_keyword(SFTConfig, "activation_checkpointing", True) is None
    assert api.check_keyword(SFTConfig, "max_seq_length")[0] == "unknown keyword"


def test_verdicts_give_one_line_per_library():
    usages = [
        drift.Usage("trl.SFTConfig", "a.py:1", ("max_length",), call=True),
        drift.Usage("peft.LoraConfig", "a.py:2", ("r",), call=True),
    ]
    problems = [
        drift.Problem("trl.SFTConfig", "max_length", "unknown keyword", "gone"),
        drift.Problem("trl.SFTTrainer", None, "missing", "gone"),
    ]
    seen = {"trl": "9.0.0", "peft": "1.0.0", "torch": None, "accelerate": "1.0.0"}
    lines = drift.verdicts(usages, problems, seen)
    assert lines[0].startswith("trl 9.0.0: 2 problems: trl.SFTConfig(max_length=): unknown")
    assert lines[1] == "peft 1.0.0: OK (1 names, 1 keywords checked)"
    # a library of which the course uses no name is said to be unchecked, never OK
    assert lines[2] == (
        "torch (not installed): NOT CHECKED: helpers/ and the notebooks use no name of it"
        " (0 names, 0 keywords)"
    )
    assert lines[3].startswith("accelerate 1.0.0: NOT CHECKED")


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
        command="python -m tools.drift --tests --newest --report drift",
    )
    data = json.loads(json_path.read_text())
    assert data["versions"] == seen
    assert data["newest_on_index"]["torch"] == "2.15.0"
    assert data["date"].startswith("2026-11-29T01:00")
    assert data["problems"][0]["keyword"] == "max_length"
    assert data["command"] == "python -m tools.drift --tests --newest --report drift"
    assert "CPU cores" in data["machine"]
    assert "differ from the pins for trl, peft" in data["mode"]
    assert data["fingerprint"] == drift.fingerprint(usages, tuple(seen))
    assert data["checked"]["per_library"]["trl"] == {"names": 1, "keywords": 1}
    text = md_path.read_text()
    trl_pin = pins.read_pins(drift.REQUIREMENTS)["trl"]
    assert f"| trl | {trl_pin} | 9.0.0 | 9.1.0 | 1 problem: trl.SFTConfig(max_length=)" in text
    assert f"sha256:{data['fingerprint']['sha256']}" in text
    assert "by `python -m tools.drift --tests --newest --report drift` with Python" in text
    assert "unit tests: 7 passed, 2 failed, 1 skipped: t::x, t::y (fails with the pins too)" in text
    assert "- `t::pins`" in text
    assert "newest: trl 9.0.0 (newest: 9.1.0), torch 2.13.0+cpu (newest: 2.15.0). `make" in text
    assert "another package's bound." in text


def test_report_says_which_libraries_make_test_latest_left_at_their_pins(tmp_path):
    assert "gguf" not in drift.latest_libraries() and "trl" in drift.latest_libraries()
    seen = {"gguf": "0.19.0", "fastapi": "0.165.0"}
    lines = drift.verdicts([], [], seen)
    when = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
    newest = {"gguf": "0.20.0", "fastapi": None}
    _, md_path = drift.write_report(
        tmp_path, seen, lines, [], [], None, when, newest, newest_errors={"fastapi": "`pip` ..."}
    )
    text = md_path.read_text()
    assert "Older than the index's newest: gguf 0.19.0 (newest: 0.20.0). `make test-latest`" in text
    assert "LATEST_LIBRARIES, so gguf stayed at the pins." in text
    assert "| fastapi | 0.165.0 | 0.165.0 | unknown | NOT CHECKED" in text
    assert "The index gave no newest release for: fastapi" in text


def _committed_report() -> dict:
    return json.loads((drift.DRIFT_DIR / "report.json").read_text(encoding="utf-8"))


def test_the_committed_report_covers_every_library():
    data = _committed_report()
    assert set(data["versions"]) == set(drift.LIBRARIES)
    assert len(data["verdicts"]) == len(drift.LIBRARIES)
    datetime.datetime.fromisoformat(data["date"])
    assert data["mode"] and data["machine"] and data["command"].startswith("python -m tools.drift")
    tests = data["unit_tests"]
    # the unit tests were run (`--tests`), or counted without running (`--count-tests`)
    assert tests is not None and ("tests" in tests or "collected" in tests), tests
    assert not any(": NOT CHECKED" in line for line in data["verdicts"]), data["verdicts"]


def test_the_committed_report_was_made_for_these_pins_and_these_names():
    """The report's fingerprint (pins of the checked libraries + every name, keyword and
    option the check covers) is the checkout's: else the report is stale."""
    committed = _committed_report().get("fingerprint") or {}
    now = drift.fingerprint(drift.find_usages())
    assert committed.get("sha256") == now["sha256"], (
        "drift/report.md and drift/report.json were made for other pins or other API names "
        f"({drift.fingerprint_changes(committed, now)}): regenerate them with {drift.REGENERATE}"
    )
    text = (drift.DRIFT_DIR / "report.md").read_text(encoding="utf-8")
    assert f"sha256:{now['sha256']}" in text, f"report.md is not report.json's: {drift.REGENERATE}"


def test_the_fingerprint_changes_with_a_pin_or_a_name_and_says_which(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("trl==1.0.0\npeft==0.1.0\n")
    usages = [drift.Usage("trl.SFTConfig", "a.py:1", ("max_length",), call=True)]
    base = drift.fingerprint(usages, ("trl", "peft", "pydantic"), requirements)
    assert base["pins"] == ["trl==1.0.0", "peft==0.1.0", "pydantic (not pinned)"]
    assert base["api"] == ["trl.SFTConfig", "trl.SFTConfig(max_length=)"]
    assert base == drift.fingerprint(usages * 2, ("trl", "peft", "pydantic"), requirements)
    more = [*usages, drift.Usage("trl.SFTConfig", "b.py:9", ("seed",), call=True)]
    renamed = drift.fingerprint(more, ("trl", "peft", "pydantic"), requirements)
    assert renamed["sha256"] != base["sha256"]
    assert drift.fingerprint_changes(base, renamed) == "checked names +1: trl.SFTConfig(seed=)"
    requirements.write_text("trl==1.1.0\npeft==0.1.0\n")
    bumped = drift.fingerprint(usages, ("trl", "peft", "pydantic"), requirements)
    assert bumped["sha256"] != base["sha256"]
    assert drift.fingerprint_changes(base, bumped) == "pins +1: trl==1.1.0; pins -1: trl==1.0.0"


def test_every_pinned_library_the_course_imports_is_checked():
    pinned = {drift._normal(name) for name in pins.read_pins(drift.REQUIREMENTS)}
    owners = importlib.metadata.packages_distributions()
    left_out = {
        top: files
        for top, files in drift.third_party_imports().items()
        if top not in drift.LIBRARIES
        and any(drift._normal(dist) in pinned for dist in owners.get(top, [top]))
    }
    assert not left_out, f"pinned, imported by the course, not in drift.LIBRARIES: {left_out}"
    usages = drift.find_usages()
    for library in drift.LIBRARIES:
        installed_by = {drift._normal(dist) for dist in owners.get(library, [])}
        assert drift._normal(drift.distribution(library)) in installed_by, (
            f"{library} is not installed by the distribution {drift.distribution(library)!r}: "
            "fix drift.DISTRIBUTIONS"
        )
        assert drift.counts(usages, library)[0] > 0, (
            f"the course uses no name of {library}: drop it from drift.LIBRARIES"
        )


def test_command_lines_and_config_files_are_checked_against_the_library():
    source = """
import sys

def accelerate_config(n):
    return {"num_processes": n, "mixed_precision": "no", "not_a_key": 1}

def command(nproc, config):
    run = [sys.executable, "-m", "torch.distributed.run"]
    if nproc:
        return [*run, "--standalone", f"--nproc_per_node={nproc}", "-m", "helpers.train"]
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
        "--num_processes", "2", "--no_such_option", "-m", "helpers.train", "--batch", "2",
    ]
"""
    files = [("helpers/launch.py", [("helpers/launch.py", source)])]
    usages = drift.find_usages(files)
    commands = {(u.target, u.keywords) for u in usages if u.cli}
    assert commands == {
        ("torch.distributed.run", ()),
        ("torch.distributed.run", ("--standalone", "--nproc_per_node")),
        (
            "accelerate.commands.launch",
            ("--config_file", "--num_processes", "--no_such_option"),
        ),
    }
    (config,) = [u for u in usages if u.target.endswith("ClusterConfig")]
    assert config.keywords == ("num_processes", "mixed_precision", "not_a_key")
    found = {(p.target, p.keyword, p.kind) for p in drift.check(usages)}
    assert found == {
        ("accelerate.commands.launch", "--no_such_option", "unknown option"),
        ("accelerate.commands.config.config_args.ClusterConfig", "not_a_key", "unknown keyword"),
    }
    line = drift.check(usages)[0].line()
    assert line.startswith("python -m accelerate.commands.launch --no_such_option: unknown")
    assert "python -m torch.distributed.run --nproc_per_node" in drift.checked_api(usages)


def test_newest_releases_reads_pip_index_and_tolerates_no_answer(tmp_path):
    fake = tmp_path / "python"
    # called as: python -m pip index versions NAME --disable-pip-version-check
    fake.write_text(
        '#!/bin/sh\ncase "$5" in\n  trl) echo "trl (9.1.0)"; echo "Available versions: 9.1.0";;\n'
        "  *) echo 'ERROR: no network' >&2; exit 1;;\nesac\n"
    )
    fake.chmod(0o755)
    errors = {}
    assert drift.newest_releases(("trl", "peft"), python=str(fake), errors=errors) == {
        "trl": "9.1.0",
        "peft": None,
    }
    assert list(errors) == ["peft"]
    assert "pip index versions peft" in errors["peft"] and "exited with code 1" in errors["peft"]
    assert errors["peft"].endswith("ERROR: no network")  # the child's own words


def _stuck(tmp_path, name="python"):
    """A command that says something on stderr, then hangs."""
    fake = tmp_path / name
    fake.write_text("#!/bin/sh\necho 'stuck at collection' >&2\nexec sleep 60\n")
    fake.chmod(0o755)
    return str(fake)


def test_a_command_past_its_time_limit_is_stopped_and_named_with_its_stderr(tmp_path):
    stuck = _stuck(tmp_path)
    start = time.monotonic()
    with pytest.raises(drift.CommandFailed) as caught:
        drift.run_command([stuck, "-m", "pip"], timeout=1)
    message = str(caught.value)
    assert message.startswith(f"`{stuck} -m pip` timed out after 1 s")
    assert message.endswith("stuck at collection")
    with pytest.raises(drift.CommandFailed, match="could not start"):
        drift.run_command([str(tmp_path / "absent")], timeout=1)
    # the index look-up and the unit-test runs turn it into a report, not a traceback
    errors = {}
    assert drift.newest_releases(("trl",), python=stuck, timeout=1, errors=errors) == {"trl": None}
    assert "timed out after 1 s" in errors["trl"]
    result = drift.run_unit_tests(python=stuck, timeout=1)
    assert result["exit_code"] is None and "stuck at collection" in result["error"]
    line = drift.unit_test_line(result)
    assert line.startswith(f"unit tests: did not finish: `{stuck} -m pytest -q")
    counted = drift.count_tests(python=stuck, timeout=1)
    assert drift.unit_test_line(counted).startswith("unit tests: not run in this mode, and not")
    assert time.monotonic() - start < 30  # each hang was cut at its limit, children included


def test_tests_are_counted_without_running_them(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\necho 't::a'\necho\necho '1020/1021 tests collected (1 deselected) in 9s'\n"
    )
    fake.chmod(0o755)
    result = drift.count_tests(python=str(fake))
    assert (result["run"], result["collected"], result["collected_all"]) == (False, 1020, 1021)
    line = drift.unit_test_line(result)
    assert line.startswith("unit tests: not run in this mode; `pytest --collect-only -q -m")
    assert "counts 1020 (the selection `--tests` runs; 1021 with the slow ones" in line


def test_unit_test_runs_are_counted_from_pytest_junit(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text("def test_a():\n    pass\n\ndef test_b():\n    assert False\n")
    code, counts = drift._pytest(sys.executable, [str(sample)], tmp_path / "out.xml")
    assert code == 1
    assert (counts["tests"], counts["failures"], counts["skipped"]) == (2, 1, 0)
    assert len(counts["failed"]) == 1 and counts["failed"][0].endswith("test_sample.py::test_b")
    # no test report (a usage error): the command and its last output say why
    code, counts = drift._pytest(sys.executable, ["--no-such-flag"], tmp_path / "none.xml")
    assert code != 0 and "wrote no test report" in counts["error"]
    assert "unrecognized arguments: --no-such-flag" in counts["error"]
