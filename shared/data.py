"""Text in, token ids out: files, directories and ``.jsonl`` records, streamed.

Every reader checks what it reads (UTF-8, not binary, not empty) and raises
:class:`DataError` naming the file. Large files are read in pieces that end at
a line break, so a corpus never has to fit in memory as text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from organfed.shared.errors import DataError

TEXT_SUFFIXES = (".txt", ".text", ".md", ".rst", ".jsonl", ".py")
PIECE_BYTES = 1 << 20


def text_files(paths: Sequence[Path | str]) -> list[Path]:
    """The files named by ``paths``: files as given, directories walked (sorted, text suffixes only)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.is_file() and p.suffix in TEXT_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise DataError(f"{path}: no text files ({', '.join(TEXT_SUFFIXES)}) in this directory")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or directory")
    if not files:
        raise DataError("no data files given")
    return files


def _decode(path: Path, raw: bytes, offset: int) -> str:
    if b"\x00" in raw:
        raise DataError(f"{path}: looks binary (NUL bytes), not text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (bad byte at offset {offset + exc.start})") from None


def _cut(block: bytes) -> int:
    """Where to end a piece: after the last newline, else before a split UTF-8 character."""
    cut = block.rfind(b"\n") + 1
    if cut:
        return cut
    cut = len(block)
    while cut > 0 and block[cut - 1] & 0xC0 == 0x80:  # continuation bytes
        cut -= 1
    return cut - 1 if cut > 0 and block[cut - 1] >= 0xC0 else cut  # a lead byte starts the carry


def _file_pieces(path: Path) -> Iterator[str]:
    """The text of one plain file in pieces of about ``PIECE_BYTES`` that end at a newline."""
    offset, carry = 0, b""
    with open(path, "rb") as fh:
        while block := fh.read(PIECE_BYTES):
            block = carry + block
            cut = _cut(block)
            piece, carry = block[:cut], block[cut:]
            if piece:
                yield _decode(path, piece, offset)
                offset += len(piece)
    if carry:
        yield _decode(path, carry, offset)


def _jsonl_records(path: Path) -> Iterator[str]:
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            line = _decode(path, raw, 0).strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise DataError(f"{path}:{number}: each .jsonl line must be an object with a string 'text' field")
            yield record["text"]


def _ends_marked(pieces: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """``(piece, is_last)`` over the pieces that hold more than white space."""
    previous = None
    for piece in pieces:
        if piece.strip():
            if previous is not None:
                yield previous, False
            previous = piece
    if previous is not None:
        yield previous, True


def iter_pieces(paths: Sequence[Path | str]) -> Iterator[tuple[str, bool]]:
    """Stream ``(text, ends_document)``: each ``.jsonl`` record is a document, so is each plain file
    (in pieces of about :data:`PIECE_BYTES` ending at a line break; the last one ends the document).

    Raises :class:`DataError` if a file is binary, not UTF-8, or every file is empty.
    """
    any_text = False
    for path in text_files(paths):
        if path.suffix == ".jsonl":
            items = ((text, True) for text in _jsonl_records(path) if text.strip())
        else:
            items = _ends_marked(_file_pieces(path))
        for item in items:
            any_text = True
            yield item
    if not any_text:
        raise DataError(f"no text in {', '.join(str(p) for p in paths)}: the data is empty")


def load_tokenizer(model_dir: Path | str) -> PreTrainedTokenizerBase:
    """The model's own tokenizer, from its directory (never the hub)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise DataError(f"{model_dir}: cannot load its tokenizer ({exc})") from exc
    tokenizer.model_max_length = 1 << 62  # we cut blocks ourselves
    return tokenizer


def iter_token_ids(tokenizer: PreTrainedTokenizerBase, pieces: Iterable[tuple[str, bool]]) -> Iterator[tuple[list[int], bool]]:
    """Token ids per piece of :func:`iter_pieces`, with the end-of-text token after each document's last piece.

    Training (:mod:`organfed.shared.blocks`) and evaluation both tokenize through here, so they see one stream.
    """
    eos = tokenizer.eos_token_id
    for text, ends in pieces:
        try:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        except (TypeError, ValueError) as exc:
            raise DataError(f"the tokenizer refused the text ({exc})") from None
        yield ids + ([eos] if ends and eos is not None else []), ends


def load_token_ids(tokenizer: PreTrainedTokenizerBase, paths: Sequence[Path | str], *, max_tokens: int | None = None) -> torch.Tensor:
    """All token ids of ``paths`` as one 1-D tensor (stopping after ``max_tokens`` if given)."""
    out: list[int] = []
    for ids, _ in iter_token_ids(tokenizer, iter_pieces(paths)):
        out += ids
        if max_tokens is not None and len(out) >= max_tokens:
            del out[max_tokens:]
            break
    return torch.tensor(out, dtype=torch.long)
