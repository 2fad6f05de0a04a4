"""Scoring a model: an lm-evaluation-harness model over the project's model, tokenizer and key/value cache, and,
without the harness, per-domain perplexity on a prepared dataset's validation shards.

The harness (``pip install 'lightning-motif[eval]'``) is imported only when a harness task runs. Its model
interface (``TemplateLM``) asks for log-likelihoods of continuations (multiple choice), of whole texts in
rolling windows (perplexity), and for generations that end at stop strings; all three run here on
``MotifForCausalLM``: the log-likelihoods from one forward per batch (logits only where they are scored), the
generations through ``components.generation`` with the cache.
"""

import math
from collections.abc import Iterable

import torch

from components.generation import SamplingConfig, generate
from components.model import MotifForCausalLM
from lightning_motif.text import TextTokenizer


def continuation_logprobs(model: MotifForCausalLM, pairs: list[tuple[list[int], list[int]]], max_length: int,
                          batch_size: int = 8) -> list[tuple[float, bool]]:
    """(sum of log-probabilities, whether each token is the greedy choice) of every continuation after its context,
    contexts cut from the left to fit ``max_length``; batches right-padded (causal: padding after a row changes
    nothing before it), logits formed only at the scored positions."""
    device = model.lm_head.weight.device
    results: list[tuple[float, bool]] = []
    for start in range(0, len(pairs), batch_size):
        rows = [(context + continuation)[-(max_length + 1):] for context, continuation in pairs[start:start + batch_size]]
        counts = [len(continuation) for _, continuation in pairs[start:start + batch_size]]
        width = max(len(row) - 1 for row in rows)
        inputs = torch.zeros(len(rows), width, dtype=torch.long, device=device)
        for i, row in enumerate(rows):
            inputs[i, :len(row) - 1] = torch.tensor(row[:-1], device=device)
        with torch.no_grad():
            hidden = model.model(inputs)
            for i, (row, count) in enumerate(zip(rows, counts)):
                scored = hidden[i, len(row) - 1 - count:len(row) - 1]
                logprobs = model.lm_head(scored).float().log_softmax(-1)
                targets = torch.tensor(row[-count:], device=device)
                total = logprobs.gather(1, targets[:, None]).sum().item()
                results.append((total, bool((logprobs.argmax(-1) == targets).all())))
    return results


def _harness_model_class():
    from lm_eval import utils
    from lm_eval.api.model import TemplateLM

    class MotifHarnessModel(TemplateLM):
        """lm-evaluation-harness ``TemplateLM`` over a MotifForCausalLM and its tokenizer."""

        def __init__(self, model: MotifForCausalLM, tokenizer: TextTokenizer, batch_size: int = 8,
                     max_length: int | None = None) -> None:
            super().__init__()
            self.model, self.text, self.batch_size = model, tokenizer, batch_size
            self.max_length = max_length or model.config.max_position_embeddings

        @property
        def eot_token_id(self) -> int:
            return self.text.eos_ids[0]

        @property
        def tokenizer_name(self) -> str:
            return "motif"

        def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
            return self.text.encode(string)

        def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
            return self.text.apply_chat_template(chat_history, add_generation_prompt)

        def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
            return continuation_logprobs(self.model, [(context, continuation) for _, context, continuation in requests],
                                         self.max_length, self.batch_size)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
            totals = []
            for (string,) in (request.args for request in requests):
                windows = [utils.make_disjoint_window(window) for window in utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)]
                totals.append(sum(total for total, _ in continuation_logprobs(self.model, windows, self.max_length,
                                                                            self.batch_size)))
            return totals

        def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
            outputs = []
            for context, settings in (request.args for request in requests):
                until = settings.get("until") or [self.text.decode([self.eot_token_id])]
                until = [until] if isinstance(until, str) else list(until)
                sampling = SamplingConfig(max_new_tokens=int(settings.get("max_gen_toks", 256)),
                                          temperature=float(settings.get("temperature", 0.0)) if settings.get("do_sample") else 0.0)
                prompt = self.tok_encode(context)[-(self.max_length - sampling.max_new_tokens):]

                def stop(row: int, tokens: list[int]) -> bool:
                    return any(marker in self.text.decode(tokens) for marker in until)

                tokens = generate(self.model, [prompt], sampling, self.text.eos_ids, stop).tokens[0]
                text = self.text.decode(tokens)
                for marker in until:
                    text = text.split(marker)[0]
                outputs.append(text)
            return outputs

    return MotifHarnessModel


def harness_model(model: MotifForCausalLM, tokenizer: TextTokenizer, batch_size: int = 8):
    """The lm-evaluation-harness model over ``model`` (imports the harness)."""
    return _harness_model_class()(model, tokenizer, batch_size)


def domain_perplexity(model: MotifForCausalLM, windows_by_domain: dict[str, Iterable[torch.Tensor]]) -> dict[str, dict]:
    """Token-weighted next-token loss and perplexity per domain over token windows (seq_len + 1 each)."""
    device = model.lm_head.weight.device
    report = {}
    for domain, windows in windows_by_domain.items():
        loss_sum, tokens = 0.0, 0
        for batch in windows:
            batch = batch.to(device).long()
            with torch.no_grad():
                loss_sum += float(model(batch[:, :-1], targets=batch[:, 1:]))
            tokens += batch[:, 1:].numel()
        report[domain] = {"loss": loss_sum / tokens, "perplexity": math.exp(loss_sum / tokens), "tokens": tokens}
    return report
