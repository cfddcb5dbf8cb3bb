"""The benchmark's code (tools/bench), checked on the tiny model and on hand-made cases."""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tools.bench import course, flops, quality, recipes, report, variants
from tools.bench import run as bench_run

# ---------------------------------------------------------------- FLOP counting


def test_the_tiny_models_matmul_weights_are_counted_by_kind(tiny):
    model, _ = tiny
    shape = flops.matmul_shape(model)
    # per layer: q 64·64, k 64·32, v 64·32, o 64·64, gate/up/down 3 · 64·128
    assert shape.body == 2 * (4096 + 2048 + 2048 + 4096 + 3 * 8192) == 73_728
    assert shape.head == 49_152 * 64 == 3_145_728  # tied to the embedding: a lookup is not counted
    assert (shape.lora, shape.layers, shape.heads, shape.head_dim) == (0, 2, 4, 16)
    assert shape.train_body and shape.train_head


def test_lora_weights_are_counted_apart_and_only_they_train():
    from peft import get_peft_model

    import helpers

    model, _ = helpers.load_model("tiny-random-smollm2", device="cpu")
    shape = flops.matmul_shape(get_peft_model(model, helpers.lora_config(r=8)))
    # r·(d_in + d_out) per projection: q 8·128, k 8·96, v 8·96, o 8·128, gate/up/down 8·192
    assert shape.lora == 2 * (1024 + 768 + 768 + 1024 + 3 * 1536) == 16_384
    assert shape.body == 73_728 and shape.head == 3_145_728
    assert not shape.train_body and not shape.train_head


FULL = flops.MatmulShape(
    body=100, head=1000, lora=0, layers=2, heads=2, head_dim=4, train_body=True, train_head=True
)
LORA = flops.MatmulShape(
    body=100, head=1000, lora=10, layers=2, heads=2, head_dim=4, train_body=False, train_head=False
)


def test_full_fine_tuning_costs_six_flops_per_weight_and_token_plus_attention():
    f = flops.training_step_flops(FULL, [3, 5])  # 8 tokens
    assert f.forward == 2 * 1100 * 8 == 17_600
    assert f.backward_input == 17_600 and f.backward_weight == 17_600
    # attention forward: 4 · layers · (heads · head_dim) · Σ L² = 4 · 2 · 8 · (9 + 25)
    assert f.attention == 3 * 2_176
    assert f.recompute == 0
    assert f.total == 3 * 17_600 + 6_528 == 59_328


def test_lora_trains_only_the_adapters_and_recomputation_is_added():
    f = flops.training_step_flops(LORA, [4])
    assert f.forward == 2 * 1110 * 4 and f.backward_input == 2 * 1110 * 4
    assert f.backward_weight == 2 * 10 * 4  # only the adapters get weight gradients
    attention_forward = 4 * 2 * 8 * 16
    assert f.attention == 3 * attention_forward
    checkpointed = flops.training_step_flops(LORA, [4], checkpointing=True, head_recompute=True)
    # blocks (not the head) run forward again, attention included; the fused head recomputes
    assert checkpointed.recompute == 2 * 110 * 4 + attention_forward + 2 * 1000 * 4
    assert checkpointed.total == f.total + checkpointed.recompute


def test_a_head_on_the_answer_positions_only_costs_that_many_positions():
    f = flops.training_step_flops(LORA, [4], head_tokens=1)
    assert f.forward == 2 * 110 * 4 + 2 * 1000 * 1
    assert f.backward_input == f.forward and f.recompute == 0
    assert flops.training_step_flops(LORA, [4], head_tokens=4) == flops.training_step_flops(
        LORA, [4]
    )


def test_padding_free_rows_cost_less_attention_than_padded_ones():
    padded = flops.training_step_flops(FULL, [8, 8])
    packed = flops.training_step_flops(FULL, [12])  # 12 real tokens, no padding
    assert packed.forward < padded.forward
    with pytest.raises(ValueError):
        flops.training_step_flops(FULL, [])


# ---------------------------------------------------------------- counting tokens


def test_a_padded_sft_batch_counts_only_loss_tokens_as_useful():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, 8, 9, 2]])
    batch = {"labels": labels, "attention_mask": torch.tensor([[1, 1, 1, 1, 0], [1] * 5])}
    s = recipes.batch_stats(batch)
    assert (s.rows, s.columns, s.examples) == (2, 5, 2)
    assert (s.tokens, s.loss_tokens, s.useful_tokens) == (9, 6, 6)
    assert s.executed_tokens == 10


def test_the_classic_batch_counts_answer_tokens_after_each_prompt():
    # prompts of 2 and 3 tokens; the last label of row 0 is padding (masked)
    labels = torch.tensor([[1, 2, 3, 4, -100, -100], [1, 2, 3, 4, 5, 6]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1] * 6])
    s = recipes.batch_stats({"labels": labels, "attention_mask": mask}, prompt_lengths=[2, 3])
    assert s.loss_tokens == 10  # the prompt carries loss too in the classic recipe
    assert s.useful_tokens == 2 + 3  # but only the answer is useful
    assert s.completion_tokens == 3 + 3  # the answer's EOS, masked as padding, is not useful


def test_a_padding_free_batch_is_one_row_of_several_examples():
    batch = {
        "labels": torch.tensor([[-100, 4, 5, -100, -100, 6]]),
        "position_ids": torch.tensor([[0, 1, 2, 0, 1, 2]]),
    }
    s = recipes.batch_stats(batch)
    assert (s.rows, s.columns, s.examples, s.tokens, s.useful_tokens) == (1, 6, 2, 6, 3)
    assert s.row_lengths == [6]


def test_the_classic_text_is_the_course_conversation_padded_to_128(tiny, yoda):
    _, tokenizer = tiny
    rows = yoda["train"].select(range(6))
    data = recipes.classic_dataset(tokenizer, rows)
    encoded = quality.encode_references(tokenizer, rows)
    for row, ref in zip(data, encoded, strict=True):
        assert len(row["input_ids"]) == recipes.CLASSIC_LENGTH == 128
        real = sum(row["attention_mask"])
        # the same tokens as the course recipe's chat (plus the template's final newline)
        assert row["input_ids"][: ref.end] == ref.ids
        assert row["prompt_length"] == ref.start
        assert real > ref.end and row["input_ids"][real:] == [tokenizer.pad_token_id] * (128 - real)


# ---------------------------------------------------------------- interleaving


def test_the_course_recipe_is_build_trainers_default_and_variants_flip_one_choice(yoda, tmp_path):
    import helpers
    from helpers import training

    train = yoda["train"].select(range(16))

    def built(**overrides):
        # a fresh model each time: the trainer wraps it in LoRA adapters in place
        model, tokenizer = helpers.load_model("tiny-random-smollm2", device="cpu")
        clock = recipes.StepClock("t", echo=False)
        return recipes.course_trainer(model, tokenizer, train, str(tmp_path), 2, clock, **overrides)

    course = built()
    assert course.bucketed_batches and training.uses_scored_head(course)
    assert recipes.first_epoch_order(course) is not None  # the classic recipe follows it
    shuffled = built(batch_order="random")
    assert not shuffled.bucketed_batches and training.uses_scored_head(shuffled)
    assert recipes.first_epoch_order(shuffled) is None
    trl_loss = built(lm_head="trl")
    assert trl_loss.bucketed_batches and not training.uses_scored_head(trl_loss)


def test_the_turnstile_interleaves_steps_and_lets_a_finished_trainer_leave():
    turnstile = recipes.Turnstile()
    order: list[str] = []

    def worker(name: str, steps: int):
        try:
            for _ in range(steps):
                turnstile.wait(name)
                order.append(name)
                turnstile.done(name)
        finally:
            turnstile.leave(name)

    for name in "abc":
        turnstile.enter(name)
    threads = [
        threading.Thread(target=worker, args=(n, k)) for n, k in (("a", 3), ("b", 1), ("c", 2))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert order == ["a", "b", "c", "a", "c", "a"]


# ---------------------------------------------------------------- teacher-forced exact match


class _Oracle(torch.nn.Module):
    """A fake causal LM whose "hidden state" at each position is the next token's id.

    Its head turns that id into a one-hot logit row, so its argmax is the true next token,
    except in the rows listed in `wrong`, where the last answer token is off by one.
    """

    base_model_prefix = "model"

    def __init__(self, vocab: int, wrong_lengths: set[int]):
        super().__init__()
        self.vocab, self.wrong_lengths = vocab, wrong_lengths
        outer = self

        class Backbone(torch.nn.Module):
            def forward(self, input_ids, attention_mask):
                nxt = torch.roll(input_ids, -1, dims=1).float()
                lengths = attention_mask.sum(1)
                for row, n in enumerate(lengths.tolist()):
                    if n in outer.wrong_lengths:  # the answer's EOS is predicted wrong
                        nxt[row, n - 2] += 1
                return SimpleNamespace(last_hidden_state=nxt.unsqueeze(-1))

        class Head(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.weight = torch.nn.Parameter(torch.zeros(1))

            def forward(self, h):
                return torch.nn.functional.one_hot(h.squeeze(-1).long(), outer.vocab).float()

        self.model, self.head = Backbone(), Head()

    def get_output_embeddings(self):
        return self.head


def test_teacher_forced_exact_match_checks_every_answer_token_and_the_eos(tiny, yoda):
    _, tokenizer = tiny
    rows = yoda["test"].select(range(12))
    encoded = quality.encode_references(tokenizer, rows)
    for e, row in zip(encoded, rows, strict=True):
        answer = tokenizer.decode(e.ids[e.start : e.end])
        assert answer == row["completion"][0]["content"] + tokenizer.eos_token
    wrong = {len(encoded[1].ids), len(encoded[5].ids)}
    oracle = _Oracle(len(tokenizer), wrong)
    hits = quality.teacher_forced_exact_match(oracle, tokenizer, rows, batch_size=5)
    assert hits == [len(e.ids) not in wrong for e in encoded]
    assert not all(hits) and any(hits)


def test_teacher_forced_hits_on_the_tiny_model_are_also_generated_exactly(tiny, yoda):
    """The check is a lower bound: every hit must be an exact match by generation too."""
    from helpers import evaluation

    model, tokenizer = tiny
    rows = yoda["test"].select(range(6))
    hits = quality.teacher_forced_exact_match(model, tokenizer, rows)
    scored = evaluation.evaluate_task(model, tokenizer, rows)
    for hit, prediction, row in zip(hits, scored.predictions, rows, strict=True):
        if hit:
            assert prediction == row["completion"][0]["content"]
    assert model.training is False  # the mode is restored


# ---------------------------------------------------------------- the whole quick run


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    results = bench_run.run("tiny-random-smollm2", quick=True, out_dir=out)
    return out, results


def _finite_positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_the_quick_run_writes_every_section(quick):
    out, _ = quick
    results = json.loads((out / "results.json").read_text())
    for key in (
        "meta",
        "matmul",
        "recipes",
        "races",
        "peaks",
        "footprint",
        "time_to_quality",
        "tuning",
        "sections",
    ):
        assert key in results, key
    # a matmul probe took its turn between the steps of each race
    for race in ("course vs classic", "time to quality", "tuning variants"):
        assert results["races"][race]["probe"], race
    assert results["recipes"]["course"]["race"] == results["recipes"]["classic"]["race"]
    assert set(results["goals"]) == {
        "throughput",
        "utilization",
        "memory",
        "footprint",
        "time_to_quality",
        "course",
    }
    assert {"course", "classic", "proposed", "chapter00", "reference", "padding_free"} <= set(
        results["recipes"]
    )
    meta = results["meta"]
    assert meta["model"] == "tiny-random-smollm2" and meta["quick"] is True
    assert meta["threads"] >= 1 and meta["torch"].startswith("2.")
    assert results["goals"]["course"] is None  # no course.json yet


def test_the_quick_runs_ratios_are_positive_and_finite(quick):
    _, results = quick
    g = results["goals"]
    for value in (
        g["throughput"]["ratio"],
        g["throughput"]["examples_ratio"],
        g["utilization"]["ratio"],
        g["utilization"]["ratio_of_best_peak"],
        g["utilization"]["classic_ratio"],
        g["memory"]["ratio"],
        g["footprint"]["ratio"],
        results["matmul"]["bf16_vs_fp32"]["ratio"],
    ):
        assert _finite_positive(value), value
    for recipe in results["recipes"].values():
        for key, value in recipe["summary"].items():
            assert _finite_positive(value), (recipe["name"], key, value)
        assert _finite_positive(recipe["utilization"]), recipe["name"]
    head = results["matmul"]["loss_head"]
    assert _finite_positive(head["fused_seconds"]) and _finite_positive(head["plain_seconds"])
    names = [t["name"] for t in results["tuning"]]
    assert "padding_free" in names and "loss_head" in names and "autocast" not in names
    assert g["throughput"]["met"] in (True, False)


def test_the_quick_runs_token_counts_are_right(quick):
    _, results = quick
    course, classic = results["recipes"]["course"], results["recipes"]["classic"]
    for step in classic["steps"]:
        assert step["columns"] == 128 and step["executed_tokens"] == 128 * step["rows"]
        assert step["useful_tokens"] < step["loss_tokens"] <= step["tokens"]
    for step in course["steps"]:
        assert step["columns"] < 128  # padded to the longest example only
        assert step["useful_tokens"] == step["loss_tokens"] < step["tokens"]
        assert step["tokens"] <= step["executed_tokens"] == step["rows"] * step["columns"]
    for c, k in zip(course["steps"], classic["steps"], strict=False):
        # the same examples in the same order: same text, same answers
        assert (c["examples"], c["tokens"]) == (k["examples"], k["tokens"])
        assert k["completion_tokens"] == c["useful_tokens"]
        # with PAD = EOS, the classic collator masks each answer's end-of-turn token
        assert k["useful_tokens"] == c["useful_tokens"] - c["examples"]
    free = results["recipes"]["padding_free"]["steps"]
    for f, c in zip(free, results["recipes"]["reference"]["steps"], strict=True):
        assert f["rows"] == 1 and f["executed_tokens"] == f["tokens"] == c["tokens"]


def test_the_quick_runs_flops_follow_the_formula(quick):
    _, results = quick
    for name in ("course", "classic", "proposed"):
        recipe = results["recipes"][name]
        shape = flops.MatmulShape(
            **{k: v for k, v in recipe["shape"].items() if k in flops.MatmulShape.__annotations__}
        )
        answers_only = recipe["shape"]["head_on_loss_tokens_only"]
        assert answers_only == (name != "classic")  # the course's loss: scored positions only
        for step in recipe["steps"]:
            expected = flops.training_step_flops(
                shape,
                [step["columns"]] * step["rows"],
                head_recompute=recipe["shape"]["head_recompute"],
                head_tokens=step["loss_tokens"] if answers_only else None,
            )
            assert step["flops"] == expected.total
            assert step["flops_per_s"] == pytest.approx(expected.total / step["seconds"])
    # trl's fused head recomputes in the backward pass; the course's loss does not use it
    assert results["recipes"]["trl_head"]["shape"]["head_recompute"] is True
    assert results["recipes"]["trl_head"]["shape"]["head_on_loss_tokens_only"] is False
    assert results["recipes"]["course"]["shape"]["head_recompute"] is False
    assert results["recipes"]["classic"]["shape"]["train_body"] is True
    assert results["recipes"]["course"]["shape"]["lora"] > 0


def test_the_quick_runs_time_to_quality_records_its_checks(quick):
    _, results = quick
    q = results["time_to_quality"]
    assert q["reached"] is False and q["steps_run"] == q["max_steps"] == 4  # random weights
    assert [c["step"] for c in q["checks"]] == [2, 4]
    assert all(0 <= c["teacher_forced_accuracy"] <= 1 for c in q["checks"])
    assert q["checks"][0]["train_seconds"] < q["checks"][1]["train_seconds"]
    assert q["generated_accuracy"] == 0.0


def test_the_markdown_table_has_every_goal_and_takes_in_the_course_timing(quick):
    out, results = quick
    text = (out / "results.md").read_text()
    assert "| metric | course | classic or reference | ratio | goal | met? |" in text
    for row in ("| 1. useful tokens/s", "| 2. utilization", "| 3. peak memory", "| 4. time to"):
        assert row in text
    assert "python -m tools.bench course" in text
    assert results["meta"]["cpu"] in text and f"({results['meta']['threads']} threads)" in text
    fake = {
        "meta": {"date": "today", "cpu": "cpu", "threads": 2, "load_start": 0.5},
        "chapters": [{"notebook": "00_tldr.ipynb", "seconds": 600.0, "error": None}],
        "total_seconds": 600.0,
        "goal_seconds": course.GOAL_SECONDS,
        "complete": True,
        "met": True,
    }
    course.write(fake, out)
    bench_run.rewrite(out)
    text = (out / "results.md").read_text()
    assert "| 5. whole course, 1 notebook | 10.0 min | 30 min | 0.33× | ≤ 30 min | yes |" in text
    assert "| 00_tldr.ipynb | 600 | ok |" in text
    course.write({**fake, "complete": False, "met": False}, out)  # `course --only 00`
    bench_run.rewrite(out)
    assert "| ≤ 30 min | n/a (partial run) |" in (out / "results.md").read_text()


def _compile_results(first_steps: float, compiled_step: float, plain_step: float) -> dict:
    """Two warm-up steps that take `first_steps` seconds in all, then timed ones."""
    compiled = {
        "warmup": 2,
        "steps": [{"seconds": first_steps - compiled_step}, {"seconds": compiled_step}]
        + [{"seconds": compiled_step}] * 3,
        "summary": {"step_seconds": compiled_step},
    }
    plain = {"summary": {"step_seconds": plain_step}}
    return {"plan": {"ttq_max_steps": 90}, "recipes": {"compile": compiled, "reference": plain}}


def test_compiling_is_judged_by_when_its_first_step_is_repaid():
    # 60 s of compiling, 0.5 s saved a step: repaid after 120 steps, more than chapter 00's 90
    measured, verdict = variants.compile_payback(
        _compile_results(64.0, 2.0, 2.5), "reference", "1.25×", "switch to on"
    )
    assert (
        "compiling: 60 s in the first 2 steps" in measured and "repaid after 120 steps" in measured
    )
    assert verdict == "keep off: repaid only after 120 steps; chapter 00 trains 90"
    # 30 s, 1 s saved a step: repaid after 30 steps, so the speed-up verdict stands
    measured, verdict = variants.compile_payback(
        _compile_results(34.0, 2.0, 3.0), "reference", "1.5×", "switch to on"
    )
    assert "repaid after 30 steps" in measured and verdict == "switch to on"
    _, verdict = variants.compile_payback(
        _compile_results(46.0, 3.0, 2.5), "reference", "0.8×", "keep off"
    )
    assert verdict == "keep off: compiling costs time and saves none"


def _tuning_results(speeds: dict[str, float], peaks: dict[str, int], bf16: dict) -> dict:
    recipes_ = {
        name: {"summary": {"useful_tokens_per_s": speed}, "memory": {"peak_bytes": peaks[name]}}
        for name, speed in speeds.items()
    }
    return {"recipes": recipes_, "matmul": {"bf16_vs_fp32": bf16}, "plan": {"ttq_max_steps": 90}}


EMULATED_BF16 = {
    "ratio": 0.25,
    "bf16_flops_per_s": 5e10,
    "fp32_flops_per_s": 2e11,
    "shape": "128x128x128",
    "bf16_native": False,
}


def test_each_variant_is_compared_with_its_own_baseline_and_judges_itself():
    listed = {v.name: v for v in variants.variants(bf16_default=False, with_compile=True)}
    speeds = {"reference": 100.0, "batch_4": 50.0, "qlora_4": 45.0, "checkpointing": 70.0}
    speeds |= {"eager": 130.0, "packing": 100.0}
    peaks = {name: 1000 for name in speeds} | {"checkpointing": 600}
    results = _tuning_results(speeds, peaks, EMULATED_BF16)
    chosen = [listed[n] for n in ("qlora_4", "checkpointing", "eager", "packing", "autocast")]
    rows = {r["name"]: r for r in bench_run.tuning(results, {"autocast": "not run: x"}, chosen)}
    # 4-bit against batch 4 (0.9×: noise), not against the batch-8 reference (0.45×)
    assert rows["qlora_4"]["compared_with"] == "batch_4"
    assert rows["qlora_4"]["ratio"] == pytest.approx(0.9)
    assert rows["qlora_4"]["verdict"].startswith("keep 4-bit in chapter 00")
    assert rows["checkpointing"]["compared_with"] == "reference"
    assert rows["checkpointing"]["verdict"] == "keep off: slower, for 40% less peak memory"
    assert rows["eager"]["verdict"] == "switch to eager (matmul + softmax)"  # 1.3× >= CLEAR_GAIN
    assert rows["packing"]["verdict"] == "keep off: no difference beyond noise"
    assert rows["autocast"]["verdict"] == "keep fp32: bf16 is emulated here, its matmuls are slower"
    assert rows["autocast"]["measured"].startswith("bf16 matmul 0.25× fp32 (50.0 vs 200.0 GFLOP/s")
    assert rows["autocast"]["measured"].endswith("training step: not run: x")
    # compile not raced: its row points to the separate measurement
    (row,) = [r for r in bench_run.tuning(results, {}, []) if r["name"] == "compile"]
    assert row["verdict"] == "keep off (bench/compile/results.md)" and row["ratio"] is None
    # without a reference run the course run is the baseline
    del results["recipes"]["reference"]
    results["recipes"]["course"] = {"summary": {"useful_tokens_per_s": 100.0}, "memory": None}
    assert variants.baseline_name(listed["eager"], results) == "course"
    assert variants.baseline_name(listed["qlora_4"], results) == "batch_4"


def test_a_variant_predicts_its_cost_and_says_what_it_changes():
    listed = {v.name: v for v in variants.variants(bf16_default=False, with_compile=True)}
    kernels = {"bf16_vs_fp32": {"ratio": 0.25}}
    assert listed["autocast"].expected_cost(kernels) == 4.0  # its matmuls run at bf16's speed
    on_gpu = {v.name: v for v in variants.variants(bf16_default=True, with_compile=False)}
    assert on_gpu["autocast"].expected_cost(kernels) == 0.25 and on_gpu["autocast"].fp32
    assert "compile" not in on_gpu
    assert listed["trl_head"].expected_cost(kernels) == 1.35
    assert listed["eager"].changed() == {"attention": "eager"}
    assert listed["qlora_4"].changed() == {"per_device_train_batch_size": 4, "quantization": "4bit"}
    assert listed["compile"].environment(Path("/w")) == {
        "TORCHINDUCTOR_CACHE_DIR": str(Path("/w") / "inductor-cache")
    }
    assert listed["eager"].environment(Path("/w")) == {}
    assert variants.proposal().name == variants.PROPOSED


def test_scoped_environ_restores_changed_and_new_variables(monkeypatch):
    monkeypatch.setenv("BENCH_TEST_OLD", "before")
    monkeypatch.delenv("BENCH_TEST_NEW", raising=False)
    with pytest.raises(RuntimeError):
        with bench_run.scoped_environ({"BENCH_TEST_OLD": "during", "BENCH_TEST_NEW": "x"}):
            assert os.environ["BENCH_TEST_OLD"] == "during" and os.environ["BENCH_TEST_NEW"] == "x"
            raise RuntimeError("a race failed")
    assert os.environ["BENCH_TEST_OLD"] == "before" and "BENCH_TEST_NEW" not in os.environ


def test_the_compile_cache_is_set_for_the_tuning_race_only(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    seen = {}

    def fake_build(bench, name, description, *, warmup, timed, variant=None):
        seen.setdefault("warmup", warmup)
        return name

    def fake_race(name, entries, probe, results):
        seen["entries"] = list(entries)
        seen["cache"] = os.environ.get("TORCHINDUCTOR_CACHE_DIR")

    monkeypatch.setattr(bench_run, "build_course", fake_build)
    monkeypatch.setattr(bench_run, "race", fake_race)
    bench = bench_run.Bench(
        "tiny", bench_run.QUICK, "cpu", bench_run.Runner(None), tmp_path, None, {}
    )
    compile_ = next(v for v in variants.variants(False, True) if v.name == "compile")
    bench_run.tuning_variants(bench, [compile_])
    assert seen["entries"] == ["reference", "compile"]
    assert seen["warmup"] == bench_run.QUICK.warmup + 1  # the race waits for compiling
    assert seen["cache"] == str(tmp_path / "inductor-cache")
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ


def test_the_budget_is_the_plans_unless_given_and_lifted_for_compiling():
    assert bench_run.run_budget(bench_run.FULL, None, compiles=False) == bench_run.FULL.budget
    assert bench_run.run_budget(bench_run.FULL, None, compiles=True) is None
    assert bench_run.run_budget(bench_run.FULL, 0, compiles=False) is None
    assert bench_run.run_budget(bench_run.FULL, 100.0, compiles=True) == 100.0
    assert bench_run.run_budget(bench_run.QUICK, None, compiles=False) is None


def test_the_report_renders_missing_figures_as_not_available():
    assert report._num(float("nan")) == "n/a" and report.megabytes(None) == "n/a"
    assert report._met(None) == "n/a" and report._pct(0.5) == "50%"


# ---------------------------------------------------------------- the whole course


def _notebook(path, source: str):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, path)


def test_the_course_timer_runs_each_chapter_in_a_copy_and_records_failures(tmp_path):
    _notebook(tmp_path / "00_fine.ipynb", "open('written.txt', 'w').write('x')")
    _notebook(tmp_path / "01_broken.ipynb", "raise ValueError('nope')")
    (tmp_path / "notes.ipynb").write_text("not a chapter")
    result = course.time_course(tmp_path, timeout=120)
    names = [c["notebook"] for c in result["chapters"]]
    assert names == ["00_fine.ipynb", "01_broken.ipynb"]
    fine, broken = result["chapters"]
    assert fine["error"] is None and fine["seconds"] > 0
    assert "nope" in broken["error"]
    assert result["complete"] is False and result["met"] is False
    assert not (tmp_path / "written.txt").exists()  # it ran in a temporary copy
