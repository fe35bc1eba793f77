"""BLIP's text tokenizer: BERT WordPiece (uncased) plus ``[DEC]`` and ``[ENC]``, without the hub.

BLIP builds ``BertTokenizer.from_pretrained('bert-base-uncased')`` and then adds ``bos_token='[DEC]'``
and the additional special token ``[ENC]``; with the 30522-token BERT vocabulary these get ids 30522
and 30523, and the text model's vocabulary is 30524 rows. Here the same tokenizer is built with the
``tokenizers`` package from a local ``vocab.txt`` (one token per line, the line number is the id),
so nothing is downloaded. Tests use a tiny vocabulary built in memory (:func:`tiny_vocab`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
DEC, ENC = "[DEC]", "[ENC]"
_REQUIRED = (PAD, UNK, CLS, SEP)

# Size of the bert-base-uncased vocabulary; [DEC]/[ENC] follow it.
BERT_VOCAB_SIZE = 30522


def pre_caption(caption: str, max_words: int = 50) -> str:
    """BLIP's caption normalisation (``data/utils.py``): lowercase, drop ``.!"()*#:;~``, squeeze spaces.

    Applied before tokenising so a prompt scores the way BLIP's training captions looked.
    """
    caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
    caption = re.sub(r"\s{2,}", " ", caption)
    caption = caption.rstrip("\n").strip(" ")
    words = caption.split(" ")
    if len(words) > max_words:
        caption = " ".join(words[:max_words])
    return caption


def tiny_vocab(extra_words: Iterable[str] = ()) -> list[str]:
    """A small WordPiece vocabulary for tests and :func:`generation.blip.tiny_blip`.

    Single characters and their ``##`` continuations make every lowercase ASCII text encodable
    (no ``[UNK]``); a few whole words keep the prompt ``"a picture of "`` at one token per word,
    as in the real vocabulary, so the CAP prompt length is the same 4 positions.
    """
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    punct = list(".,!?'\"-()*#:;~/&+")
    words = [
        "a", "an", "the", "of", "picture", "photo", "in", "on", "with", "and", "is",
        "cat", "dog", "red", "blue", "green", "car", "tree", "man", "woman", "table",
        "sitting", "house", "sky", "water", "bird", "flower",
    ]
    out = [PAD, UNK, CLS, SEP, MASK] + punct + chars + ["##" + c for c in chars]
    for w in [*words, *extra_words]:
        if w not in out:
            out.append(w)
    return out


class BlipTokenizer:
    """BERT uncased WordPiece with BLIP's ``[DEC]`` (bos) and ``[ENC]`` tokens appended.

    Parameters
    ----------
    vocab:
        Token list in id order (``vocab.txt`` lines) or a ``token -> id`` mapping.
    """

    def __init__(self, vocab: Sequence[str] | Mapping[str, int]):
        if isinstance(vocab, Mapping):
            table = dict(vocab)
        else:
            table = {tok: i for i, tok in enumerate(vocab)}
            if len(table) != len(vocab):
                dup = sorted({t for t in vocab if list(vocab).count(t) > 1})[:5]
                raise ValueError(f"the vocabulary repeats token(s) {dup}; ids would not be line numbers")
        # [DEC]/[ENC] are appended after the last id; a gap or clash would shift them off BLIP's rows.
        if sorted(table.values()) != list(range(len(table))):
            raise ValueError("vocabulary ids must be exactly 0..n-1")
        missing = [t for t in _REQUIRED if t not in table]
        if missing:
            raise ValueError(
                f"the vocabulary lacks the BERT special token(s) {', '.join(missing)}; "
                f"use bert-base-uncased's vocab.txt (it ships with the Salesforce/blip-* hub repos)"
            )
        self.base_vocab_size = len(table)
        tok = Tokenizer(WordPiece(table, unk_token=UNK, max_input_chars_per_word=100))
        # Same pipeline as BertTokenizer(do_lower_case=True): accents stripped because lowercase is on.
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        # BERT's own specials keep their vocab ids but are never split and are skipped by decode.
        tok.add_special_tokens([t for t in (PAD, UNK, CLS, SEP, MASK) if t in table])
        # [DEC] is added before [ENC], as BLIP's init_tokenizer does, so they get ids n and n+1.
        tok.add_special_tokens([DEC, ENC])
        self.cls_token_id = table[CLS]
        self.sep_token_id = table[SEP]
        self.pad_token_id = table[PAD]
        self.unk_token_id = table[UNK]
        self.bos_token_id = tok.token_to_id(DEC)
        self.enc_token_id = tok.token_to_id(ENC)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{CLS} $A {SEP}", special_tokens=[(CLS, self.cls_token_id), (SEP, self.sep_token_id)]
        )
        self._tok = tok

    @classmethod
    def from_vocab_file(cls, vocab_file: str | os.PathLike) -> "BlipTokenizer":
        """Read a BERT ``vocab.txt`` (one token per line)."""
        path = Path(vocab_file)
        if not path.is_file():
            raise FileNotFoundError(
                f"BERT vocab file not found: {path}. Point vocab_file at bert-base-uncased's vocab.txt "
                f"(232 kB, 30522 lines; it is in every Salesforce/blip-* hub repo)."
            )
        tokens = path.read_text(encoding="utf-8").splitlines()
        # A trailing empty line is a file artefact, not a token; an empty line inside would shift ids.
        while tokens and tokens[-1] == "":
            tokens.pop()
        return cls(tokens)

    @classmethod
    def tiny(cls) -> "BlipTokenizer":
        return cls(tiny_vocab())

    def __len__(self) -> int:
        """Vocabulary size including ``[DEC]`` and ``[ENC]`` (the text model's embedding rows)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Ids of one text with ``[CLS]`` first and ``[SEP]`` last, no truncation."""
        return self._tok.encode(text).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def __call__(self, texts: Sequence[str], *, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenise a batch padded to its longest member (``padding='longest'``, truncation).

        Returns
        -------
        ids, attention_mask:
            int64 tensors of shape ``(N, L)``, ``L <= max_length``; truncation keeps ``[SEP]`` last.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        if not texts:
            raise ValueError("texts is empty")
        if max_length < 2:
            raise ValueError(f"max_length={max_length} leaves no room for [CLS] and [SEP]")
        self._tok.enable_truncation(max_length=max_length)
        self._tok.enable_padding(pad_id=self.pad_token_id, pad_token=PAD)
        try:
            enc = self._tok.encode_batch(list(texts))
        finally:
            self._tok.no_truncation()
            self._tok.no_padding()
        ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
        return ids, mask
