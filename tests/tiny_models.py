"""Tiny Hugging Face models built from a config (random weights, fixed seed) for offline tests."""

from __future__ import annotations

from pathlib import Path

TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Sparse autoencoders find interpretable features in transformer activations.",
    "Snakemake builds only what is missing or stale, chunk by chunk.",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u2014 unicode text survives byte-level tokenizers. 12345 + 678 = 13023",
]


def build_byte_bpe_tokenizer(directory: Path, vocab_size: int = 300):
    """A byte-level BPE tokenizer (lossless, like GPT-2's) that adds a BOS to every input."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<bos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(TRAINING_TEXT * 5, trainer)
    bos = tokenizer.token_to_id("<bos>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos)]
    )
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<bos>", pad_token="<pad>")
    wrapped.save_pretrained(directory)
    return wrapped


def build_tiny_causal_lm(directory: Path, n_layer: int = 2, n_embd: int = 32, seed: int = 0) -> Path:
    """A 2-block GPT-2 with random weights and the tokenizer above, saved to `directory`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = build_byte_bpe_tokenizer(directory)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=256, n_embd=n_embd, n_layer=n_layer, n_head=4,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(directory)
    return directory


def build_tiny_llama(directory: Path, n_layer: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A small Llama (RMSNorm, rotary, gated MLP, grouped-query attention) with random weights and
    the tokenizer above, saved to `directory`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_byte_bpe_tokenizer(directory)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=n_layer,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def build_lora_adapter(model_dir: Path, adapter_dir: Path, target_modules=("q_proj", "v_proj"), r: int = 4,
                       seed: int = 0) -> Path:
    """A LoRA adapter for the model in `model_dir`, saved (safetensors) to `adapter_dir`. lora_B is
    random rather than PEFT's zeros, so the adapter changes the model's outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(target_modules)))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    peft_model.save_pretrained(adapter_dir)
    return adapter_dir
