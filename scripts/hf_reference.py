#!/usr/bin/env python3
"""Writes the Hugging Face reference decoders that `tests/hf.rs` loads (issue #5).

    python3 scripts/hf_reference.py [OUT]      default OUT: tests/fixtures/hf

For each architecture the `--base-dir` loader accepts, transformers builds a tiny random decoder and writes it the
way a user's model directory looks (`config.json`, `model.safetensors`), with the logits transformers' own forward
pass computes on a right-padded batch (`reference.json`). The Rust test loads the directory with
`LlamaModel::from_hf_dir` and must reproduce those logits, so the name mapping, the rotary row order, Qwen2's
biases, Llama 3's rotary scaling and the head tying are all checked against an independent implementation.

- `qwen2/`: Qwen2 (query/key/value biases), tied head.
- `llama3/`: Llama with Llama 3.1's `rope_scaling` (`llama3`) and an untied head.

Needs `torch` and `transformers` (any 4.4x or 5.x); the tests do not, they read the committed files. Nothing is
downloaded: the weights are random, drawn from a fixed seed.
"""

import json
import sys
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

SHAPE = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=48, rms_norm_eps=1e-6)
# Row 0: 12 tokens; row 1: 8 tokens then 4 padding slots (right padding, as the decoder expects).
INPUT_IDS = [[3, 17, 9, 41, 5, 60, 22, 8, 33, 1, 50, 12], [7, 2, 44, 19, 63, 11, 30, 6, 0, 0, 0, 0]]
ATTENTION_MASK = [[1] * 12, [1] * 8 + [0] * 4]


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Replaces transformers' 0.02-std init so that logits are O(1) and every weight, bias and norm matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(1.0 + 0.2 * noise if name.endswith("norm.weight") else 0.3 * noise)


def write(out: Path, model: torch.nn.Module) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").unlink(missing_ok=True)  # not read by the loader
    ids = torch.tensor(INPUT_IDS)
    mask = torch.tensor(ATTENTION_MASK)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    rows = [logits[r, : sum(ATTENTION_MASK[r])].tolist() for r in range(len(INPUT_IDS))]
    reference = {"input_ids": INPUT_IDS, "attention_mask": ATTENTION_MASK, "logits": rows,
                 "transformers": __import__("transformers").__version__, "torch": torch.__version__}
    (out / "reference.json").write_text(json.dumps(reference))
    print(f"wrote {out}")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "tests/fixtures/hf"
    torch.manual_seed(0)
    qwen = Qwen2ForCausalLM(Qwen2Config(**SHAPE, rope_theta=10000.0, tie_word_embeddings=True,
                                        attn_implementation="eager"))
    randomize(qwen, 1)
    write(out / "qwen2", qwen)
    # head_dim 8 with rope_theta 1e4 gives wavelengths 6.3, 63, 628 and 6283 positions; with an original context of
    # 128 and factors 1 / 4 the first is kept, the second blended and the last two divided by 8.
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 128}
    llama = LlamaForCausalLM(LlamaConfig(**SHAPE, rope_theta=10000.0, rope_scaling=scaling, tie_word_embeddings=False,
                                         attn_implementation="eager"))
    randomize(llama, 2)
    write(out / "llama3", llama)


if __name__ == "__main__":
    main()
