"""GPU readiness check: SFT, then 20 GRPO steps, with a tiny random-weight model on CUDA in bf16.

Runs cello1's own training stages (``train_sft`` with LoRA and a merged model, then
``train_grpo`` with the paper reward, held-out generation at the end of each) on synthetic
puzzles, and prints each optimiser step's time and the peak GPU memory per stage. Nothing
is downloaded: the model is a random-weight Llama and its tokenizer is trained here on the
puzzle text (byte-level BPE with a ChatML template). The model has about 4 M parameters,
so the run should be dominated by imports, TRL start-up and generation latency; it must stay
under 8 minutes (run it with ``timeout 480``). Not yet run on a GPU (see BENCHMARKS.md).

On a GPU machine without internet that has torch, transformers, peft and accelerate but no
TRL, carry TRL and the few packages it needs as wheels (about 2 MB; run here, in the
repository root, where pip can reach PyPI)::

    bash benchmarks/gpu_wheels.sh            # -> .whl/ (trl 1.16.0, datasets, dill, multiprocess)

then, on the GPU machine, from the repository root::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:src python3 benchmarks/gpu_check.py --json gpu_check.json

``--device cpu --dtype float32`` runs the same check on a CPU (``tests/test_gpu_check.py``
does, with fewer steps). Results: BENCHMARKS.md ("GPU readiness").
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without installing cello1
    sys.path.insert(0, str(ROOT / "src"))

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MARKERS = {
    "B cell": ["MS4A1", "CD79A", "CD19"],
    "T cell": ["CD3E", "CD3D", "IL7R"],
    "NK cell": ["NKG7", "GNLY", "KLRD1"],
    "Monocyte": ["LYZ", "CD14", "S100A8"],
    "Dendritic cell": ["FCER1A", "CST3", "CLEC10A"],
    "Platelet": ["PPBP", "PF4", "GP9"],
}
CONTEXT = "The cell is from a female at the adult stage, originating from the blood."


def make_puzzles(count: int, n: int, genes: int, seed: int) -> list:
    """Puzzles of ``n`` cells, each listing its 3 markers among ``genes`` genes, with a trace."""
    from cello1.puzzle import Puzzle

    rng = random.Random(seed)
    background = [f"GENE{i}" for i in range(400)]
    puzzles = []
    for i in range(count):
        labels = rng.sample(sorted(MARKERS), n)
        cells = [MARKERS[t] + rng.sample(background, max(0, genes - 3)) for t in labels]
        for cell in cells:
            rng.shuffle(cell)
        trace = " ".join(f"Cell {j} expresses {', '.join(MARKERS[t])}, so it is {t}." for j, t in enumerate(labels, 1))
        puzzles.append(
            Puzzle(
                id=f"g{seed}-{i}",
                context=CONTEXT,
                cells=cells,
                candidates=sorted(labels),
                answer=labels,
                reasoning=trace,
            )
        )
    return puzzles


def make_tiny_model(folder: Path, puzzles: list, hidden: int, layers: int, seed: int) -> Path:
    """A random-weight Llama with a BPE tokenizer trained on the puzzles' chat text."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    texts = [m["content"] for p in puzzles for m in p.messages("sft")] + [p.assistant_msg for p in puzzles]
    trainer = trainers.BpeTrainer(
        vocab_size=2048, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 128),
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def step_clock(device: str):
    """A TrainerCallback timing each optimiser step (device-synchronised) and checking that
    the model trains on ``device``.
    """
    import torch
    from transformers import TrainerCallback

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.model_device: str | None = None
            self._start = 0.0

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.model_device = str(next(model.parameters()).device) if model is not None else None

        def on_step_begin(self, args, state, control, **kwargs):
            sync()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            self.times.append(time.perf_counter() - self._start)

    return StepClock()


def run_stage(name: str, train, config, device: str) -> dict:
    """Run one stage; its step times, peak GPU memory, final metrics and held-out scores."""
    import torch

    clock = step_clock(device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = train(config, callbacks=[clock])
    wall = time.perf_counter() - start
    report = {
        "stage": name,
        "steps": len(clock.times),
        "step_seconds": [round(t, 4) for t in clock.times],
        "median_step_seconds": round(sorted(clock.times)[len(clock.times) // 2], 4) if clock.times else None,
        "wall_seconds": round(wall, 1),
        "model_device": clock.model_device,
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
        "peak_gpu_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3) if cuda else None,
        "train_loss": result.metrics.get("train_loss"),
        "heldout": result.heldout[-1] if result.heldout else None,
        "model_dir": str(result.model_dir) if result.model_dir else None,
    }
    print(
        f"{name}: {report['steps']} steps on {report['model_device']}, step seconds "
        f"{', '.join(f'{t:.3f}' for t in clock.times)}; median {report['median_step_seconds']} s, "
        f"wall {report['wall_seconds']} s, peak GPU memory {report['peak_gpu_memory_gib']} GiB allocated "
        f"/ {report['peak_gpu_reserved_gib']} GiB reserved",
        flush=True,
    )
    return report


def check_environment(device: str, dtype: str) -> dict:
    """Fail fast, with the fix, when the device, bf16 or TRL is missing; versions otherwise."""
    import importlib.util

    import torch

    if importlib.util.find_spec("trl") is None:
        sys.exit(
            "error: TRL is not installed; carry it as wheels (bash benchmarks/gpu_wheels.sh, see this file's help)"
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"error: --device {device} but torch sees no CUDA GPU; use --device cpu --dtype float32")
    if dtype == "bfloat16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        sys.exit("error: this GPU has no bf16 support; use --dtype float32")
    if dtype == "bfloat16" and not device.startswith("cuda"):
        sys.exit("error: bf16 training runs on a GPU here; on a CPU use --dtype float32")
    import peft
    import transformers
    import trl

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda | cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--sft-steps", type=int, default=20)
    parser.add_argument("--grpo-steps", type=int, default=20)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--grpo-prompts", type=int, default=4, help="prompts per GRPO step")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="GRPO rollout and held-out budget")
    parser.add_argument("--n", type=int, default=4, help="cells per puzzle")
    parser.add_argument("--genes", type=int, default=50, help="genes listed per cell")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--eval-puzzles", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cello1-gpu-check"))
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    versions = check_environment(args.device, args.dtype)
    from cello1.io import write_puzzles
    from cello1.training.config import GRPOStageConfig, SFTStageConfig
    from cello1.training.grpo import train_grpo
    from cello1.training.sft import train_sft

    start = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    train = make_puzzles(64, args.n, args.genes, args.seed)
    test = make_puzzles(args.eval_puzzles, args.n, args.genes, args.seed + 1)
    write_puzzles(out / "train.jsonl", train)
    write_puzzles(out / "test.jsonl", test)
    base = make_tiny_model(out / "base", train + test, args.hidden, args.layers, args.seed)
    bf16, use_cpu = args.dtype == "bfloat16", not args.device.startswith("cuda")
    common = {
        "train_file": str(out / "train.jsonl"),
        "eval_file": str(out / "test.jsonl"),
        "eval_max_puzzles": args.eval_puzzles,
        "eval_max_new_tokens": args.max_new_tokens,
        "eval_batch_size": args.eval_puzzles,
        "bf16": bf16,
        "use_cpu": use_cpu,
        "save_steps": 100_000,
        "resume_from_checkpoint": False,
        "seed": args.seed,
        "report_to": "none",
    }
    sft = run_stage(
        "sft",
        train_sft,
        SFTStageConfig(
            model=str(base),
            output_dir=str(out / "sft"),
            max_steps=args.sft_steps,
            learning_rate=1e-3,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=1,
            max_length=2048,
            use_lora=True,
            lora_r=16,
            lora_alpha=32,
            merge=True,
            **common,
        ),
        args.device,
    )
    grpo = run_stage(
        "grpo",
        train_grpo,
        GRPOStageConfig(
            model=sft["model_dir"],
            output_dir=str(out / "grpo"),
            max_steps=args.grpo_steps,
            learning_rate=1e-5,
            num_generations=args.num_generations,
            per_device_train_batch_size=args.grpo_prompts * args.num_generations,
            gradient_accumulation_steps=1,
            max_prompt_length=2048,
            max_completion_length=args.max_new_tokens,
            use_vllm=False,
            **common,
        ),
        args.device,
    )
    report = {
        "device": args.device,
        "dtype": args.dtype,
        "versions": versions,
        "model": {"hidden": args.hidden, "layers": args.layers, "random_weights": True},
        "puzzles": {"n": args.n, "genes": args.genes, "train": len(train), "heldout": len(test)},
        "stages": [sft, grpo],
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    print(f"total {report['total_seconds']} s ({json.dumps(versions)})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
