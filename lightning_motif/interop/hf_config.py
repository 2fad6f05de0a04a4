"""The released Motif-2 ``config.json`` (Hugging Face layout) and ``ModelConfig``, field by field.

    config.json                  ModelConfig
    hidden_size                  hidden_size
    intermediate_size            mlp.intermediate_size (PolyNormMLPConfig; hidden_act "poly_norm")
    num_hidden_layers            num_layers
    num_noise_heads              attention.num_noise_heads (G)
    num_attention_heads          G * (r + 1): r = attention.signal_noise_ratio (r = 1: DifferentialAttentionConfig)
    num_key_value_heads          2 * G (a (k1, k2) / (v1, v2) pair per group)
    head_dim                     attention.head_dim
    vocab_size                   vocab_size
    rms_norm_eps                 norm_eps
    attn_rms_norm_eps            attention.subln_eps
    rope_theta                   rope_theta
    max_position_embeddings      max_position_embeddings
    tie_word_embeddings          tie_word_embeddings

PolyNorm's eps (1e-6) and the lambda_init schedule of the released models are fixed in their code, not in
config.json: a model with another PolyNorm eps or the Differential Transformer paper's lambda_init cannot be
written in this layout. The released 12.7B config.json fills every field of the table (arXiv 2511.07464, Table
1); for the plain differential 2.6B layout (r = 1) the same fields are our choice.
"""

from components.attention import DifferentialAttentionConfig, GroupedDifferentialAttentionConfig
from components.config_error import ConfigError
from components.mlp import PolyNormMLPConfig
from components.model import ModelConfig

MODEL_TYPE = "motif"
ARCHITECTURES = ["MotifForCausalLM"]
POLYNORM_EPS = 1e-6
MAPPED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_noise_heads", "num_attention_heads",
          "num_key_value_heads", "head_dim", "vocab_size", "rms_norm_eps", "attn_rms_norm_eps", "rope_theta",
          "max_position_embeddings", "tie_word_embeddings", "hidden_act")
WITHOUT_EFFECT = ("architectures", "model_type", "torch_dtype", "dtype", "transformers_version", "auto_map",
                  "bos_token_id", "eos_token_id", "pad_token_id", "use_cache", "initializer_range", "_name_or_path")
"""Fields that do not change the function the weights compute (ids, dtype and loading metadata)."""
NEUTRAL = {"rope_scaling": None, "attention_bias": False, "mlp_bias": False, "attention_dropout": 0.0,
           "hidden_dropout": 0.0, "sliding_window": None, "use_sliding_window": False, "pretraining_tp": 1}
"""Fields this project honours only at these values (the released models' ones)."""


def _fail(field: str, value: object, fix: str) -> ConfigError:
    return ConfigError("config.json", field, value, fix)


def to_config_json(config: ModelConfig) -> dict:
    """config.json of ``config`` in the released layout; ConfigError naming the field it cannot express."""
    attention, mlp = config.attention, config.mlp
    if isinstance(attention, GroupedDifferentialAttentionConfig):
        groups, ratio = attention.num_noise_heads, attention.signal_noise_ratio
    elif isinstance(attention, DifferentialAttentionConfig) and attention.num_kv_heads == attention.num_heads:
        groups, ratio = attention.num_heads, 1
    else:
        raise ConfigError("ModelConfig", "attention", type(attention).__name__, "the Motif-2 layout holds grouped "
                          "differential attention (or differential attention with one key/value pair per head)")
    if attention.lambda_init_schedule != "motif":
        raise ConfigError(type(attention).__name__, "lambda_init_schedule", attention.lambda_init_schedule,
                          "the released models compute the 'motif' schedule in their code: export needs it")
    if not isinstance(mlp, PolyNormMLPConfig) or mlp.eps != POLYNORM_EPS:
        raise ConfigError("ModelConfig", "mlp", mlp, f"the Motif-2 layout holds a PolyNorm MLP with eps {POLYNORM_EPS}")
    return {
        "architectures": ARCHITECTURES, "model_type": MODEL_TYPE, "hidden_act": "poly_norm",
        "hidden_size": config.hidden_size, "intermediate_size": mlp.intermediate_size,
        "num_hidden_layers": config.num_layers, "num_noise_heads": groups, "num_attention_heads": groups * (ratio + 1),
        "num_key_value_heads": 2 * groups, "head_dim": attention.head_dim, "vocab_size": config.vocab_size,
        "rms_norm_eps": config.norm_eps, "attn_rms_norm_eps": attention.subln_eps, "rope_theta": config.rope_theta,
        "max_position_embeddings": config.max_position_embeddings, "tie_word_embeddings": config.tie_word_embeddings,
        "torch_dtype": "bfloat16",
    }


def from_config_json(data: dict) -> ModelConfig:
    """The ModelConfig of a released-layout config.json; ConfigError naming the first field it cannot honour."""
    for field in data:
        if field in NEUTRAL and data[field] != NEUTRAL[field]:
            raise _fail(field, data[field], f"only {NEUTRAL[field]!r} is supported (as in the released models)")
        if field not in MAPPED + WITHOUT_EFFECT and field not in NEUTRAL:
            raise _fail(field, data[field], "unknown field: this converter does not know how it changes the model")
    missing = [field for field in MAPPED if field not in data and field != "tie_word_embeddings"]
    if missing:
        raise _fail(missing[0], None, "missing: the released layout sets it")
    if data.get("model_type", MODEL_TYPE) != MODEL_TYPE:
        raise _fail("model_type", data["model_type"], f"not a Motif model (model_type {MODEL_TYPE!r})")
    if data["hidden_act"] != "poly_norm":
        raise _fail("hidden_act", data["hidden_act"], "the Motif-2 layout uses 'poly_norm'")
    groups, heads, kv_heads = data["num_noise_heads"], data["num_attention_heads"], data["num_key_value_heads"]
    if groups < 1 or heads % groups or heads // groups < 2:
        raise _fail("num_attention_heads", heads, f"must be num_noise_heads ({groups}) x (signal heads per group + 1)")
    if kv_heads != 2 * groups:
        raise _fail("num_key_value_heads", kv_heads, f"must be 2 x num_noise_heads = {2 * groups} (a k1/k2 pair per group)")
    ratio, head_dim, subln_eps = heads // groups - 1, data["head_dim"], data["attn_rms_norm_eps"]
    if ratio == 1:
        attention = DifferentialAttentionConfig(num_heads=groups, num_kv_heads=groups, head_dim=head_dim, subln_eps=subln_eps)
    else:
        attention = GroupedDifferentialAttentionConfig(num_noise_heads=groups, signal_noise_ratio=ratio, head_dim=head_dim,
                                                       subln_eps=subln_eps)
    return ModelConfig(
        vocab_size=data["vocab_size"], hidden_size=data["hidden_size"], num_layers=data["num_hidden_layers"],
        max_position_embeddings=data["max_position_embeddings"], rope_theta=float(data["rope_theta"]),
        norm_eps=data["rms_norm_eps"], tie_word_embeddings=bool(data.get("tie_word_embeddings", False)),
        attention=attention, mlp=PolyNormMLPConfig(intermediate_size=data["intermediate_size"], eps=POLYNORM_EPS),
    )


def model_config_dict(config: ModelConfig) -> dict:
    """``config`` as plain data, components by class_path and init_args: the form of a preset file and of the
    hyper-parameters ``motif fit`` saves (loadable with torch.load(weights_only=True))."""
    import dataclasses

    def component(part) -> dict:
        return {"class_path": f"{type(part).__module__.rsplit('.', 1)[0]}.{type(part).__name__}",
                "init_args": dataclasses.asdict(part)}

    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields.update(attention=component(config.attention), mlp=component(config.mlp))
    return fields


def model_config_yaml(config: ModelConfig) -> str:
    """``config`` as a preset file (``--model.transformer <file>``)."""
    import yaml

    return yaml.safe_dump(model_config_dict(config), sort_keys=False)
