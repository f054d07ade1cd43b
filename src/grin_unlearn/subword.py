"""A pretrained LLM's subword tokenizer, compacted to the pieces a corpus uses.

The built-in models segment text the way a real 7B model does: with the SentencePiece BPE model of
Mistral-7B v0.1 (32,000 pieces, byte fallback), which the ``mistral-common`` wheel ships as
``mistral_common/data/tokenizer.model.v1``. It is read from the installed package, never copied
here. A tiny model cannot afford a 32,000-row embedding, so :func:`compact_subword_tokenizer` keeps
only what the corpus needs:

* every piece that SentencePiece outputs on the corpus,
* every intermediate piece that BPE builds on the way to one (the merge tree of each kept piece),
* the 256 byte pieces (any other text still encodes, through byte fallback) and the special tokens.

Why the result segments the corpus exactly as the full model does: SentencePiece BPE merges, at each
step, the adjacent pair whose concatenation has the highest score. A final piece is built only from
merges inside its own span, in the order the full model makes them, so the merges it takes are the
ones recorded by tracing the piece alone; a merge that no kept piece needs never fires on the corpus.
The builder re-encodes the whole corpus with the compacted tokenizer and refuses to return one that
disagrees with SentencePiece on any string.

The result is a ``PreTrainedTokenizerFast`` (a ``tokenizers`` BPE with a Metaspace pre-tokenizer) that
``AutoTokenizer`` loads in transformers 4.45 and 5.x from the saved ``tokenizer.json``.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from .errors import UserInputError

SENTENCEPIECE_PACKAGE = "mistral_common"
SENTENCEPIECE_FILE = "mistral_common/data/tokenizer.model.v1"
SUBWORD_SOURCE = "Mistral-7B v0.1 SentencePiece (mistral-common/data/tokenizer.model.v1)"
PAD_TOKEN = "<pad>"
SPACE = "\u2581"  # SentencePiece's visible space, "▁"


def sentencepiece_model_path() -> Path:
    """The Mistral-7B v0.1 SentencePiece model inside the installed ``mistral-common`` wheel."""
    try:
        path = Path(importlib.metadata.distribution(SENTENCEPIECE_PACKAGE).locate_file(SENTENCEPIECE_FILE))
    except importlib.metadata.PackageNotFoundError:
        raise UserInputError("the built-in subword tokenizer needs the mistral-common package "
                             "(pip install 'mistral-common[sentencepiece]')") from None
    if not path.is_file():
        raise UserInputError(f"{path}: the installed mistral-common has no {SENTENCEPIECE_FILE}")
    return path


def _processor():
    try:
        import sentencepiece
    except ImportError:
        raise UserInputError("the built-in subword tokenizer needs the sentencepiece package "
                             "(pip install 'mistral-common[sentencepiece]')") from None
    return sentencepiece.SentencePieceProcessor(model_file=str(sentencepiece_model_path()))


def _merge_tree(piece: str, vocab: dict[str, int], scores: list[float]) -> list[tuple[str, str]]:
    """The merges SentencePiece BPE makes to build ``piece`` from its characters, in order.

    At each step the adjacent pair whose concatenation is a piece with the highest score merges, the
    leftmost on ties (SentencePiece's ``bpe_model.cc``).
    """
    symbols = list(piece)
    merges = []
    while len(symbols) > 1:
        best = None
        for i in range(len(symbols) - 1):
            joined = symbols[i] + symbols[i + 1]
            if joined in vocab and (best is None or scores[vocab[joined]] > scores[vocab[symbols[best] + symbols[best + 1]]]):
                best = i
        if best is None:
            break
        merges.append((symbols[best], symbols[best + 1]))
        symbols[best:best + 2] = [symbols[best] + symbols[best + 1]]
    return merges


def compact_subword_tokenizer(texts: list[str]):
    """The Mistral-7B v0.1 tokenizer restricted to what ``texts`` need (see the module docstring).

    Ids: ``<unk>``, ``<s>``, ``</s>``, ``<pad>``, the 256 byte pieces, then the kept pieces in the full
    model's order. Raises ``RuntimeError`` if the result segments any text differently from
    SentencePiece.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    processor = _processor()
    size = processor.vocab_size()
    pieces = [processor.id_to_piece(i) for i in range(size)]
    scores = [processor.get_score(i) for i in range(size)]
    normal = {p: i for i, p in enumerate(pieces)
              if not (processor.is_byte(i) or processor.is_control(i) or processor.is_unknown(i))}
    full_ids = processor.encode(texts)
    used = {pieces[i] for ids in full_ids for i in ids if pieces[i] in normal}
    merges: set[tuple[str, str]] = set()
    kept = set(used)
    for piece in used:
        tree = _merge_tree(piece, normal, scores)
        merges.update(tree)
        kept.update(a for a, _ in tree)
        kept.update(b for _, b in tree)
    specials = ["<unk>", "<s>", "</s>", PAD_TOKEN]
    byte_pieces = [f"<0x{b:02X}>" for b in range(256)]
    ordered = specials + byte_pieces + sorted(kept, key=normal.__getitem__)
    vocab = {piece: i for i, piece in enumerate(ordered)}
    ranked = sorted(merges, key=lambda m: (normal[m[0] + m[1]], normal[m[0]], normal[m[1]]))
    core = Tokenizer(models.BPE(vocab=vocab, merges=ranked, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    core.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="first", split=True)
    core.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(),
                                      decoders.Strip(" ", 1, 0)])
    core.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                        pad_token=PAD_TOKEN, unk_token="<unk>", padding_side="right",
                                        model_input_names=["input_ids", "attention_mask"],
                                        clean_up_tokenization_spaces=False)  # decode gives the text back
    to_compact = {i: vocab[p] for i, p in enumerate(pieces) if p in vocab}
    ours = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for text, theirs, mine in zip(texts, full_ids, ours):
        if [to_compact.get(i) for i in theirs] != mine:
            raise RuntimeError(f"compacted tokenizer disagrees with SentencePiece on {text!r}")
    return tokenizer
