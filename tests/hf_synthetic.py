"""Synthetic checkpoints in the released Motif-2 Hugging Face layout, written from the published description
alone (names, shapes and dtypes of the 643-tensor 12.7B checkpoint, config.json fields), not from the project's
code: config.json, bf16 safetensors shards with model.safetensors.index.json, lambda vectors in fp32, optional
rotary inv_freq buffers, tokenizer and generation files."""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file


def released_config(hidden: int, layers: int, ffn: int, noise_heads: int, ratio: int, head_dim: int, vocab: int,
                    tied: bool = False) -> dict:
    return {
        "architectures": ["MotifForCausalLM"], "model_type": "motif", "hidden_act": "poly_norm",
        "hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": layers,
        "num_attention_heads": noise_heads * (ratio + 1), "num_key_value_heads": 2 * noise_heads,
        "num_noise_heads": noise_heads, "head_dim": head_dim, "vocab_size": vocab, "rms_norm_eps": 1e-6,
        "attn_rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
        "tie_word_embeddings": tied, "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2,
        "transformers_version": "4.51.3", "use_cache": True, "initializer_range": 0.02,
    }


def released_tensors(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with the released names, shapes and dtypes (bf16; the lambda vectors fp32)."""
    generator = torch.Generator().manual_seed(seed)
    h, f, d, g = config["hidden_size"], config["intermediate_size"], config["head_dim"], config["num_noise_heads"]
    heads, kv, vocab = config["num_attention_heads"], config["num_key_value_heads"], config["vocab_size"]
    signal = heads - g

    def normal(*shape, std=0.02, mean=0.0, dtype=torch.bfloat16):
        return (torch.randn(*shape, generator=generator) * std + mean).to(dtype)

    tensors = {"model.embed_tokens.weight": normal(vocab, h, std=1.0), "model.norm.weight": normal(h, std=0.1, mean=1.0)}
    if not config["tie_word_embeddings"]:
        tensors["lm_head.weight"] = normal(vocab, h, std=0.05)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors.update({
            p + "self_attn.q_proj.weight": normal(heads * d, h, std=0.15), p + "self_attn.k_proj.weight": normal(kv * d, h, std=0.15),
            p + "self_attn.v_proj.weight": normal(kv * d, h, std=0.15), p + "self_attn.o_proj.weight": normal(h, signal * 2 * d, std=0.1),
            **{p + f"self_attn.lambda_{n}": normal(d, std=0.3, dtype=torch.float32) for n in ("q1", "k1", "q2", "k2")},
            p + "self_attn.subln.weight": normal(2 * d, std=0.1, mean=1.0),
            p + "mlp.gate_proj.weight": normal(f, h, std=0.1), p + "mlp.up_proj.weight": normal(f, h, std=0.1),
            p + "mlp.down_proj.weight": normal(h, f, std=0.1), p + "mlp.act_fn.weight": normal(3, std=0.1, mean=0.33),
            p + "mlp.act_fn.bias": normal(1, std=0.1), p + "input_layernorm.weight": normal(h, std=0.1, mean=1.0),
            p + "post_attention_layernorm.weight": normal(h, std=0.1, mean=1.0),
        })
    return tensors


def write_released_folder(folder: Path, config: dict, tensors: dict[str, torch.Tensor], shards: int = 3,
                          inv_freq: bool = True) -> Path:
    """Write ``tensors`` as ``shards`` safetensors files (with the index) beside config.json and tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    names = list(tensors)
    if inv_freq:  # some released checkpoints carry these buffers
        extra = {f"model.layers.{i}.self_attn.rotary_emb.inv_freq": torch.ones(config["head_dim"] // 2)
                 for i in range(config["num_hidden_layers"])}
        tensors, names = {**tensors, **extra}, names + list(extra)
    per_shard = -(-len(names) // shards)
    weight_map = {}
    for index in range(shards):
        file = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        members = names[index * per_shard:(index + 1) * per_shard]
        save_file({n: tensors[n].contiguous() for n in members}, str(folder / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(members, file))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "chat_template": "{{ messages }}"}))
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": 2, "do_sample": False}))
    return folder


def write_released_tokenizer(folder: Path, base_words: int = 219_000, added: int = 520) -> Path:
    """A tokenizer folder of the released structure: tokenizer.json whose vocabulary (with its added special
    tokens) has ``base_words + added`` entries (219,520 by default, the released size), tokenizer_config.json
    (eos token and a chat template), special_tokens_map.json and added_tokens.json."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<unk>": 0, **{f"w{i}": i + 1 for i in range(base_words - 1)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [f"<|reserved_{i}|>" for i in range(added - 3)]
    tokenizer.add_special_tokens([AddedToken(token, special=True) for token in specials])
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": {"content": "<|im_end|>", "special": True}, "bos_token": None,
        "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"}))
    (folder / "special_tokens_map.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
    (folder / "added_tokens.json").write_text(json.dumps({token: base_words + i for i, token in enumerate(specials)}))
    return folder
