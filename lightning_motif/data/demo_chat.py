"""An offline chat set for trying the SFT chain on any machine, made from local material only:

- ``broad`` (stage 1): arithmetic word problems with short worked answers, and code tasks built from the standard
  library (a function's docstring as the request, its source as the answer), some of them two turns long;
- ``reasoning`` (stage 2): multi-step word problems answered step by step, and the code tasks again.

Both are written as .jsonl records of ``messages`` (the format ``motif prepare`` reads for ``format: chat``).
A few records are repeated with different spacing and capitalisation, and a few have answers too short to teach
anything, so that stage 3's pruning (``lightning_motif.data.prune``) has something to remove. ``write_demo_task``
writes a local lm-evaluation-harness task on new word problems (``motif eval`` between the stages).
"""

import ast
import json
import random
import sysconfig
from pathlib import Path

ITEMS = ("apples", "books", "tickets", "marbles", "stamps", "boxes")
NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fay")


def _word_problem(rng: random.Random, steps: bool) -> list[dict]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randint(3, 90), rng.randint(2, 40), rng.randint(2, 9)
    kind = rng.randrange(3)
    if kind == 0:
        question = f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?"
        work, answer = [f"{name} starts with {a} {item}.", f"Buying {b} more gives {a} + {b} = {a + b}."], a + b
    elif kind == 1:
        question = f"{name} packs {a} {item} into each of {c} bags and then gives away {b}. How many are left?"
        work = [f"{c} bags of {a} hold {c} * {a} = {a * c} {item}.", f"Giving away {b} leaves {a * c} - {b} = {a * c - b}."]
        answer = a * c - b
    else:
        total = a * c
        question = f"{total} {item} are shared equally by {c} friends. How many does each friend get?"
        work, answer = [f"Each friend gets {total} / {c}.", f"{total} / {c} = {a}."], a
    if steps:
        reply = "\n".join(f"Step {i + 1}: {line}" for i, line in enumerate(work)) + f"\nAnswer: {answer}"
    else:
        reply = f"{work[-1]} The answer is {answer}."
    return [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]


def _code_tasks(limit: int) -> list[list[dict]]:
    """Module-level functions of the standard library with a docstring and a short body: the docstring's first
    paragraph as the request, the source as the answer."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    tasks = []
    for path in sorted(stdlib.glob("*.py")):
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in tree.body:
            doc = ast.get_docstring(node) if isinstance(node, ast.FunctionDef) else None
            body = ast.get_source_segment(source, node) if doc else None
            if not doc or not body or len(body) > 1200 or node.name.startswith("_"):
                continue
            request = doc.split("\n\n")[0].strip()
            signature = f"{node.name}({ast.unparse(node.args)})"
            tasks.append([
                {"role": "system", "content": "You write small, correct Python functions."},
                {"role": "user", "content": f"Write `{signature}`: {request}"},
                {"role": "assistant", "content": f"```python\n{body}\n```"},
            ])
            if len(tasks) == limit:
                return tasks
    return tasks


def _noise(rng: random.Random, records: list[list[dict]]) -> list[list[dict]]:
    """Near-duplicates (spacing and case changed) of 5% of the records, and 3% with a one-word answer."""
    extra = []
    for messages in rng.sample(records, max(1, len(records) // 20)):
        extra.append([{**m, "content": "  " + m["content"].upper() + " "} for m in messages])
    for messages in rng.sample(records, max(1, len(records) * 3 // 100)):
        extra.append([*messages[:-1], {"role": "assistant", "content": "Yes."}])
    return extra


def demo_conversations(kind: str, examples: int, seed: int = 0) -> list[list[dict]]:
    """``examples`` conversations of ``kind`` ("broad" or "reasoning") plus the near-duplicates and low-value
    records of ``_noise``, in a seeded order."""
    if kind not in ("broad", "reasoning"):
        raise ValueError(f"kind: {kind!r}; use 'broad' or 'reasoning'")
    rng = random.Random(f"{kind}-{seed}")
    code = _code_tasks(examples // 3)
    math = [_word_problem(rng, steps=kind == "reasoning") for _ in range(examples - len(code))]
    for conversation in math[: len(math) // 5]:  # some two-turn conversations
        conversation += _word_problem(rng, steps=kind == "reasoning")
    records = code + math
    records += _noise(rng, records)
    rng.shuffle(records)
    return records


def write_demo_chat(path: Path, kind: str, examples: int, seed: int = 0) -> Path:
    """Write ``demo_conversations`` to ``path`` (.jsonl) unless it is already there."""
    path = Path(path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with partial.open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps({"messages": m}) + "\n" for m in demo_conversations(kind, examples, seed))
        partial.replace(path)
    return path


DEMO_TASK = "sft_demo_arithmetic"


def write_demo_task(folder: Path, examples: int = 40, seed: int = 1) -> Path:
    """A multiple-choice task of new word problems for ``motif eval --include_path <folder>``: the user turn in
    ChatML with the assistant header, then the short worked answer with the right number or one of three wrong
    ones (accuracy by log-likelihood)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"task-{seed}")
    rows = []
    for _ in range(examples):
        question, reply = (m["content"] for m in _word_problem(rng, steps=False))
        answer = int(reply.rsplit(" ", 1)[1].rstrip("."))
        wrong = rng.sample([n for n in range(answer - 9, answer + 10) if n != answer], 3)
        choices = [reply.replace(str(answer), str(n)) for n in [answer, *wrong]]
        order = rng.sample(range(4), 4)
        rows.append({"question": f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n",
                     "choices": [choices[i] for i in order], "answer": order.index(0)})
    data = folder / f"{DEMO_TASK}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / f"{DEMO_TASK}.yaml").write_text(json.dumps({
        "task": DEMO_TASK, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}", "target_delimiter": "",
        "doc_to_choice": "{{choices}}", "doc_to_target": "answer", "metric_list": [{"metric": "acc"}]}, indent=2))
    return folder
