"""``motif eval`` offline: lm-evaluation-harness over local task YAMLs and jsonl data (a multiple-choice task, a
generation task scored by exact match, a rolling-perplexity task) and the built-in per-domain perplexity, each
checked against numbers computed here from plain forwards of the same model; results JSON beside the checkpoint.

fp32 on CPU: the harness's numbers and the direct ones come from the same forwards summed in another order,
within 1e-4 relative."""

import json
import math

import pytest
import torch
import yaml

from components.generation import SamplingConfig, generate
from lightning_motif.evaluation import continuation_logprobs
from lightning_motif.generate import load_model
from lightning_motif.text import TextTokenizer
from motif_cli import run_motif, run_motif_in_process


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_checkpoint):
    checkpoint, tokenizer = tiny_checkpoint
    return load_model(str(checkpoint), torch.device("cpu"), torch.float32), TextTokenizer(tokenizer)


def full_logprobs(model, tokens: list[int]) -> torch.Tensor:
    """log-probabilities of tokens[1:] after tokens[:-1], from one plain forward."""
    with torch.no_grad():
        logits = model(torch.tensor([tokens[:-1]])).float().log_softmax(-1)[0]
    return logits.gather(1, torch.tensor(tokens[1:])[:, None]).squeeze(1)


def test_continuation_logprobs_match_a_plain_forward(model_and_tokenizer):
    model, _ = model_and_tokenizer
    pairs = [([5, 9, 30], [44, 2]), ([7], [8, 9, 10, 11]), ([1, 2, 3, 4, 5, 6], [7])]
    results = continuation_logprobs(model, pairs, max_length=64, batch_size=2)
    for (context, continuation), (total, greedy) in zip(pairs, results):
        expected = full_logprobs(model, context + continuation)[-len(continuation):].sum().item()
        assert total == pytest.approx(expected, rel=1e-4, abs=1e-4)
        with torch.no_grad():
            logits = model(torch.tensor([(context + continuation)[:-1]]))[0, -len(continuation):]
        assert greedy == (logits.argmax(-1).tolist() == continuation)


def write_task(folder, name: str, rows: list[dict], spec: dict) -> None:
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", **spec}))


def test_eval_runs_local_harness_tasks_and_domain_perplexity(tmp_path, tiny_checkpoint, model_and_tokenizer, monkeypatch):
    checkpoint, tokenizer_dir = tiny_checkpoint
    model, tokenizer = model_and_tokenizer
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    questions = [{"question": f"x = {i}\ny =", "choices": [" 1", " x", " None"], "answer": i % 3} for i in range(6)]
    write_task(tasks, "motif_choice", questions, {"output_type": "multiple_choice", "doc_to_text": "{{question}}",
                                                  "target_delimiter": "",
                                                  "doc_to_choice": "{{choices}}", "doc_to_target": "answer",
                                                  "metric_list": [{"metric": "acc"}]})
    prompts = ["def main(", "import os\n", "The value is"]
    greedy = generate(model, [tokenizer.encode(p) for p in prompts], SamplingConfig(max_new_tokens=6)).tokens
    targets = [tokenizer.decode(tokens) for tokens in greedy]
    write_task(tasks, "motif_echo", [{"prompt": p, "target": t} for p, t in zip(prompts, targets)],
               {"output_type": "generate_until", "doc_to_text": "{{prompt}}", "doc_to_target": "{{target}}",
                "generation_kwargs": {"until": ["<never>"], "max_gen_toks": 6, "do_sample": False},
                "metric_list": [{"metric": "exact_match"}]})
    texts = [" ".join(["the quick brown fox jumps over the lazy dog"] * 3), "print(sum(range(10)))"]
    write_task(tasks, "motif_rolling", [{"text": t} for t in texts],
               {"output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "{{text}}",
                "metric_list": [{"metric": "word_perplexity"}]})
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # the local jsonl needs no download
    result = run_motif(["eval", "--checkpoint", str(checkpoint), "--tokenizer", tokenizer_dir, "--include_path", str(tasks),
                        "--tasks", "motif_choice", "--tasks", "motif_echo", "--tasks", "motif_rolling",
                        "--tasks", "perplexity", "--data_dir", tokenizer_dir, "--seq_len", "64"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads(checkpoint.with_name(checkpoint.name + ".eval.json").read_text())

    def pair(context: str, continuation: str) -> tuple[list[int], list[int]]:  # as the harness splits them
        whole, head = tokenizer.encode(context + continuation), tokenizer.encode(context)
        return head, whole[len(head):]

    picks = []
    for row in questions:
        scores = [total for total, _ in continuation_logprobs(model, [pair(row["question"], c) for c in row["choices"]], 256)]
        picks.append(int(max(range(3), key=scores.__getitem__) == row["answer"]))
    assert results["tasks"]["motif_choice"]["acc,none"] == pytest.approx(sum(picks) / len(picks))
    assert results["tasks"]["motif_echo"]["exact_match,none"] == 1.0  # the targets are the model's greedy output
    eot = tokenizer.eos_ids[0]
    total = sum(full_logprobs(model, [eot] + tokenizer.encode(t)).sum().item() for t in texts)
    words = sum(len(t.split()) for t in texts)
    assert results["tasks"]["motif_rolling"]["word_perplexity,none"] == pytest.approx(math.exp(-total / words), rel=1e-4)
    for domain in ("code", "math", "prose"):
        report = results["perplexity"][domain]
        assert report["perplexity"] == pytest.approx(math.exp(report["loss"])) and report["tokens"] > 0
    assert "[eval] motif_choice" in result.stdout


@pytest.mark.parametrize("args,expected", [
    (["--tasks", "no_such_task"], "EvalConfig.tasks = ['no_such_task']: unknown to lm-evaluation-harness"),
    (["--tasks", "perplexity"], "EvalConfig.data_dir = None: the perplexity task reads a prepared dataset"),
    ([], "EvalConfig.tasks = []: name at least one task"),
])
def test_bad_eval_arguments_stop_with_one_line(args, expected, tiny_checkpoint, tmp_path):
    checkpoint, tokenizer_dir = tiny_checkpoint
    result = run_motif_in_process(["eval", "--checkpoint", str(checkpoint), "--tokenizer", tokenizer_dir, *args], tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("motif: error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-3000:]


def test_a_training_run_scores_a_local_task_every_n_steps(tmp_path, corpus_cache, monkeypatch):
    from motif_cli import scalar_steps, tiny_run_args

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    write_task(tasks, "motif_choice", [{"question": f"x = {i}\ny =", "choices": [" 1", " x"], "answer": i % 2} for i in range(4)],
               {"output_type": "multiple_choice", "doc_to_text": "{{question}}", "doc_to_choice": "{{choices}}",
                "doc_to_target": "answer", "metric_list": [{"metric": "acc"}]})
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "lightning_motif.callbacks.MotifCheckpoint", "init_args": {"every_n_train_steps": 100}},
        {"class_path": "lightning_motif.callbacks.HarnessTaskMonitor",
         "init_args": {"tasks": ["motif_choice"], "include_path": str(tasks), "every_n_train_steps": 3, "limit": 4}}]}}))
    result = run_motif(["fit", *tiny_run_args(tmp_path, corpus_cache, 6), "--config", str(tmp_path / "monitor.yaml"),
                        "--trainer.limit_val_batches=0"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    scores = scalar_steps(tmp_path / "tensorboard" / "version_0", "eval/motif_choice/acc_none")
    assert sorted(scores) == [2, 5] and all(0.0 <= v <= 1.0 for v in scores.values())  # after steps 3 and 6
