"""``motif generate`` end to end (subprocesses, CPU): from a checkpoint file, from an FSDP2 distributed-checkpoint
folder and from an exported Hugging Face folder; batches, streaming, chat templates, stop strings, seeded sampling
and the one-line refusals."""

import json

import pytest

from motif_cli import run_motif, run_motif_in_process



@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_checkpoint, tiny_sharded_checkpoint):
    """The tiny run's checkpoint file, the distributed-checkpoint folder of an FSDP2 run, an export of the file
    with the corpus's tokenizer, and that tokenizer's folder."""
    checkpoint, tokenizer = tiny_checkpoint
    tmp = tmp_path_factory.mktemp("generate")
    result = run_motif(["convert", "export", "--source", str(checkpoint), "--output", str(tmp / "hf"),
                        "--tokenizer", tokenizer], cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"file": str(checkpoint), "sharded": str(tiny_sharded_checkpoint[0]), "hf": str(tmp / "hf"),
            "tokenizer": tokenizer, "tmp": tmp}


def motif_generate(trained, source: str, *args: str, tokenizer: bool = True):
    extra = ["--tokenizer", trained["tokenizer"]] if tokenizer else []
    return run_motif(["generate", "--checkpoint", trained[source], *extra, *args], cwd=trained["tmp"])


@pytest.mark.parametrize("source", ["file", "sharded", "hf"])
def test_generates_from_every_checkpoint_form(source, trained):
    output = trained["tmp"] / f"{source}.jsonl"
    result = motif_generate(trained, source, "--prompt", "def main(", "--prompt", "The sum of 2 and 3 is",
                            "--sampling.max_new_tokens", "12", "--output", str(output), tokenizer=source != "hf")
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["prompt"] for r in records] == ["def main(", "The sum of 2 and 3 is"]
    assert all(r["tokens"] <= 12 and r["finish"] in ("length", "eos") for r in records)
    assert "tokens/s" in result.stderr and "prompt:" in result.stderr


def test_a_single_prompt_streams_and_seeded_sampling_repeats(trained):
    args = ["--prompt", "import os", "--sampling.max_new_tokens", "16", "--sampling.temperature", "1.0",
            "--sampling.top_k", "50", "--sampling.seed", "3"]
    first, second = motif_generate(trained, "file", *args), motif_generate(trained, "file", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout == second.stdout and first.stdout.strip()


def test_chat_messages_use_the_template_and_stop_strings_cut(trained, tmp_path):
    folder = tmp_path / "tokenizer"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((trained["tmp"] / "hf" / "tokenizer.json").read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": "<|endoftext|>",
        "chat_template": "{% for m in messages %}[{{ m.role }}]: {{ m.content }}\n{% endfor %}"
                         "{% if add_generation_prompt %}[assistant]: {% endif %}"}))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"messages": [{"role": "user", "content": "hello"}]}) + "\n"
                       + json.dumps({"prompt": "x = 1"}) + "\n")
    output = tmp_path / "out.jsonl"
    result = run_motif(["generate", "--checkpoint", trained["file"], "--tokenizer", str(folder), "--prompts_file",
                        str(prompts), "--sampling.max_new_tokens", "24", "--stop", "\n", "--output", str(output)],
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert records[0]["prompt"] == "[user]: hello\n[assistant]: " and records[1]["prompt"] == "x = 1"
    assert all("\n" not in r["text"] for r in records)


@pytest.mark.parametrize("args,expected", [
    (["--prompt", "word " * 300], "GenerateConfig.prompt = "),
    (["--prompt", "hi", "--sampling.top_p", "0"], "SamplingConfig.top_p = 0"),
    (["--prompts_file", "nowhere.jsonl"], "GenerateConfig.prompts_file = 'nowhere.jsonl': no such file"),
    (["--prompt", "hi", "--chat", "true"], "tokenizer.chat_template = None: the tokenizer folder has no chat template"),
])
def test_bad_generate_arguments_stop_with_one_line(args, expected, trained):
    result = run_motif_in_process(["generate", "--checkpoint", trained["file"], "--tokenizer", trained["tokenizer"], *args],
                                  trained["tmp"])
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("motif: error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-3000:]
