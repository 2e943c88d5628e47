#!/usr/bin/env python3
"""Build the CLIP BPE tokenizer files (vocab.json + merges.txt) with no network.

The `open_clip_torch` wheel on PyPI carries OpenAI's `bpe_simple_vocab_16e6.txt.gz`,
the merge list every Stable Diffusion text encoder was trained with. The Hugging Face
CLIPTokenizer wants the same data as `vocab.json` (token -> id) and `merges.txt`, so
this script rebuilds them the way OpenAI's SimpleTokenizer orders its vocabulary:
256 byte symbols, the same 256 with the end-of-word marker, 48,894 merges, then
<|startoftext|> and <|endoftext|> -- 49,408 tokens.

    pip download --no-deps open_clip_torch -d /tmp/oc
    unzip -j /tmp/oc/open_clip_torch-*.whl open_clip/bpe_simple_vocab_16e6.txt.gz -d /tmp/oc
    python inference/configs/build_clip_tokenizer.py /tmp/oc/bpe_simple_vocab_16e6.txt.gz \
        inference/configs/sd15/tokenizer inference/configs/sdxl/tokenizer inference/configs/sdxl/tokenizer_2
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

END_OF_WORD = "</w>"
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
# OpenAI keeps the first 49152 - 256 - 2 merges of the file (line 0 is a header).
MERGE_COUNT = 49152 - 256 - 2
CLIP_VOCAB_SIZE = 49408


def bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable character table byte-level BPE uses (GPT-2 and CLIP alike).

    Printable Latin-1 bytes map to themselves; the others are shifted above 255 so that
    no token contains whitespace or control characters.
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shift)
            shift += 1
    # Insertion order matters: the vocabulary lists the printable bytes first, then the
    # shifted ones, exactly as OpenAI's table does (sorting by byte would renumber tokens).
    return table


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id in SimpleTokenizer's order, so ids match the trained embeddings."""
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + END_OF_WORD for s in symbols]
    tokens += ["".join(pair) for pair in merges]
    tokens += [START_TOKEN, END_TOKEN]
    return {token: index for index, token in enumerate(tokens)}


def read_merges(bpe_gz: Path, count: int = MERGE_COUNT) -> list[tuple[str, str]]:
    lines = gzip.open(bpe_gz, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : count + 1]]
    if any(len(pair) != 2 for pair in merges):
        raise ValueError(f"{bpe_gz} does not look like a CLIP BPE merge list")
    return merges  # type: ignore[return-value]


def tokenizer_config(pad_token: str) -> dict:
    # model_max_length 77: without it the pipeline never truncates and the text encoder
    # overflows its 77 position embeddings.
    return {
        "add_prefix_space": False,
        "bos_token": START_TOKEN,
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": END_TOKEN,
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": pad_token,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": END_TOKEN,
    }


def write_tokenizer(folder: Path, merges: list[tuple[str, str]], pad_token: str = END_TOKEN) -> None:
    """Write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = build_vocab(merges)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merge_lines = ["#version: 0.2"] + [" ".join(pair) for pair in merges]
    (folder / "merges.txt").write_text("\n".join(merge_lines) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(pad_token), indent=2) + "\n")
    special = {"bos_token": START_TOKEN, "eos_token": END_TOKEN, "pad_token": pad_token, "unk_token": END_TOKEN}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bpe_gz", type=Path, help="bpe_simple_vocab_16e6.txt.gz from the open_clip_torch wheel")
    parser.add_argument("folders", type=Path, nargs="+", help="tokenizer folders to write")
    parser.add_argument(
        "--pad-token-2",
        default="!",
        help="pad token for folders named tokenizer_2 (SDXL's OpenCLIP bigG pads with '!')",
    )
    args = parser.parse_args()
    merges = read_merges(args.bpe_gz)
    for folder in args.folders:
        pad = args.pad_token_2 if folder.name == "tokenizer_2" else END_TOKEN
        write_tokenizer(folder, merges, pad_token=pad)
        size = len(build_vocab(merges))
        assert size == CLIP_VOCAB_SIZE, size
        print(f"wrote {folder} ({size} tokens, pad {pad!r})")


if __name__ == "__main__":
    main()
