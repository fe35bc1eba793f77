"""BLIP tokenizer: BERT uncased WordPiece from a local vocab file plus [DEC]/[ENC]."""

import pytest
import torch

from generation.tokenization import BERT_VOCAB_SIZE, BlipTokenizer, pre_caption, tiny_vocab


def bert_layout_vocab() -> list[str]:
    """A 30522-token vocab with bert-base-uncased's layout of special tokens.

    [PAD]=0, [unused0..98], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103, then single characters,
    "##" continuations and a few whole words, padded with [unusedN] to the real size.
    """
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [t for t in tiny_vocab() if not t.startswith("[")]
    tokens += ["pict", "##ure", "photograph", "running", "cafe"]
    n = 99
    while len(tokens) < BERT_VOCAB_SIZE:
        tokens.append(f"[unused{n}]")
        n += 1
    return tokens


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(bert_layout_vocab()) + "\n", encoding="utf-8")
    return path


def test_real_layout_special_ids(vocab_file):
    tok = BlipTokenizer.from_vocab_file(vocab_file)
    # BLIP: bos_token [DEC] -> 30522, additional special token [ENC] -> 30523, MED vocab 30524.
    assert (tok.bos_token_id, tok.enc_token_id) == (30522, 30523)
    assert len(tok) == 30524
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id) == (0, 101, 102)
    # BLIP_Decoder: prompt_length = len(tokenizer(prompt).input_ids) - 1 = 4.
    assert len(tok.encode("a picture of ")) - 1 == 4


def test_matches_transformers_bert_tokenizer(vocab_file):
    from transformers import BertTokenizer
    from transformers.models.bert.tokenization_bert import load_vocab

    # transformers 5 builds the fast tokenizer from a vocab mapping, not from vocab_file.
    ref = BertTokenizer(vocab=load_vocab(str(vocab_file)), do_lower_case=True)
    ref.add_special_tokens({"bos_token": "[DEC]"})
    ref.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    ours = BlipTokenizer.from_vocab_file(vocab_file)
    assert ref.convert_tokens_to_ids(["[DEC]", "[ENC]"]) == [ours.bos_token_id, ours.enc_token_id]
    texts = [
        "A Picture of a CAT, sitting on the table!",
        "Café photographs: running dogs (2 of them)",
        "pictures of a red-blue car; ~tree~ #sky",
        "émoji 🙂 and ünknown wörds",
        "  a   picture   of  ",
        "[CLS] stays whole [SEP]",
    ]
    for text in texts:
        assert ours.encode(text) == ref(text)["input_ids"], text
    ids, mask = ours(texts, max_length=12)
    ref_batch = ref(texts, padding="longest", truncation=True, max_length=12, return_tensors="pt")
    assert torch.equal(ids, ref_batch["input_ids"])
    assert torch.equal(mask, ref_batch["attention_mask"])


def test_padding_and_truncation():
    tok = BlipTokenizer.tiny()
    ids, mask = tok(["a cat", "a picture of a red dog on the table"], max_length=6)
    assert ids.shape == (2, 6) and ids.dtype == torch.long
    assert ids[0].tolist()[:4] == tok.encode("a cat")
    assert mask[0].tolist() == [1, 1, 1, 1, 0, 0]
    assert ids[0, 4:].tolist() == [tok.pad_token_id] * 2
    # Truncation keeps [SEP] as the last token.
    assert ids[1, 0] == tok.cls_token_id and ids[1, -1] == tok.sep_token_id
    # The tokenizer state (truncation/padding) must not leak into later single encodes.
    assert len(tok.encode("a picture of a red dog on the table")) > 6


def test_tiny_vocab_has_no_unknowns_for_ascii_text():
    tok = BlipTokenizer.tiny()
    ids = tok.encode("a zebra 42 jumps over xylophones")
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == "a zebra 42 jumps over xylophones"
    assert (tok.bos_token_id, tok.enc_token_id) == (len(tiny_vocab()), len(tiny_vocab()) + 1)


def test_missing_vocab_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "vocab.txt"
    with pytest.raises(FileNotFoundError, match="nowhere/vocab.txt"):
        BlipTokenizer.from_vocab_file(missing)


def test_vocab_without_specials_is_rejected(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("hello\nworld\n")
    with pytest.raises(ValueError, match=r"\[PAD\]"):
        BlipTokenizer.from_vocab_file(path)


def test_vocab_with_repeated_tokens_is_rejected():
    with pytest.raises(ValueError, match="repeats"):
        BlipTokenizer(tiny_vocab() + ["cat"])


def test_bad_batch_arguments():
    tok = BlipTokenizer.tiny()
    with pytest.raises(TypeError):
        tok("a cat", max_length=8)
    with pytest.raises(ValueError):
        tok([], max_length=8)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("A Dog. Running!", "a dog running"),
        ('"quoted" (paren) *star* #hash: semi; tilde~', "quoted paren star hash semi tilde"),
        ("  keep, commas  and-hyphens\n", "keep, commas and-hyphens"),
    ],
)
def test_pre_caption(raw, expected):
    assert pre_caption(raw) == expected


def test_pre_caption_truncates_words():
    assert pre_caption("one two three four", max_words=2) == "one two"
