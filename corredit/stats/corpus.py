"""Text corpora for covariance statistics: files, in-memory texts, Hugging Face datasets.

Usage::

    from corredit.stats import TextFileCorpus, TextsCorpus, HFDatasetCorpus
    wiki = TextFileCorpus("wiki.test.raw.txt", clean="wikitext")  # one document per line
    world = TextsCorpus(texts, identity="world-v1")
    hub = HFDatasetCorpus("wikitext", config="wikitext-103-raw-v1", split="train")
    wiki.identity                       # stable string naming the corpus and its content
    for doc in wiki.documents(start=10): ...   # documents from the 11th on

A corpus yields non-blank documents in a fixed order; ``documents(start)`` skips the first
``start`` of them, which is how an interrupted statistics run resumes.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence, runtime_checkable

__all__ = [
    "Corpus",
    "TextFileCorpus",
    "TextsCorpus",
    "HFDatasetCorpus",
    "CLEANERS",
    "clean_wikitext",
]


@runtime_checkable
class Corpus(Protocol):
    """What the statistics pass needs from a corpus."""

    @property
    def identity(self) -> str:
        """A stable name of the corpus and its content (part of the cache key)."""
        ...

    def documents(self, start: int = 0) -> Iterator[str]:
        """Non-blank documents in a fixed order, skipping the first ``start``."""
        ...


_WIKITEXT_JOINS = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))
_SPACE_BEFORE_PUNCT = re.compile(r" ([,.;:!?)\]}']|'s\b|n't\b)")
_SPACE_AFTER_OPEN = re.compile(r"([(\[{]) ")
_WIKITEXT_HEADING = re.compile(r"^\s*(= )+.*( =)+\s*$")


def clean_wikitext(text: str) -> str | None:
    """Undo WikiText's tokenisation of one line; ``None`` for a heading line.

    ``" = Title = "`` -> None; ``"a 2 @-@ part arc , he said"`` -> ``"a 2-part arc, he said"``;
    ``<unk>`` markers are dropped.
    """
    if _WIKITEXT_HEADING.match(text):
        return None
    for old, new in _WIKITEXT_JOINS:
        text = text.replace(old, new)
    text = text.replace("<unk>", "")
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _SPACE_AFTER_OPEN.sub(r"\1", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text or None


#: Named document cleaners for :class:`TextFileCorpus` (``clean="wikitext"``).
CLEANERS: dict[str, Callable[[str], str | None]] = {"wikitext": clean_wikitext}


def _short_hash(parts: Iterable[str | bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8") if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:16]


class TextFileCorpus:
    """Documents from a UTF-8 text file.

    ``split="line"``: each non-blank line is a document (WikiText raw keeps one paragraph
    per line); ``split="paragraph"``: blocks separated by blank lines, their lines joined
    with a space. ``clean`` names a cleaner from :data:`CLEANERS` applied to every line
    (a cleaner returning ``None`` drops the line). The identity holds the file name and a
    hash of its bytes, so a changed file never reuses cached statistics.
    """

    def __init__(self, path: str | Path, *, split: str = "line", clean: str | None = None,
                 identity: str | None = None, encoding: str = "utf-8") -> None:
        self.path = Path(path)
        if split not in ("line", "paragraph"):
            raise ValueError(f"TextFileCorpus {self.path}: split must be 'line' or 'paragraph', "
                             f"got {split!r}")
        if clean is not None and clean not in CLEANERS:
            raise ValueError(f"TextFileCorpus {self.path}: unknown cleaner {clean!r}; known: "
                             f"{', '.join(sorted(CLEANERS))}")
        if not self.path.is_file():
            raise FileNotFoundError(f"corpus file not found: {self.path}")
        self.split = split
        self.clean = clean
        self.encoding = encoding
        self._identity = identity

    @property
    def identity(self) -> str:
        if self._identity is None:
            h = hashlib.sha256()
            with open(self.path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            self._identity = (f"file:{self.path.name}:sha256={h.hexdigest()[:16]}:"
                              f"split={self.split}:clean={self.clean}")
        return self._identity

    def _lines(self) -> Iterator[str | None]:
        cleaner = CLEANERS[self.clean] if self.clean else None
        with open(self.path, encoding=self.encoding, newline=None) as f:
            for raw in f:
                line = raw.rstrip("\r\n")
                if not line.strip():
                    yield None  # blank line: paragraph boundary
                    continue
                text = cleaner(line) if cleaner else line.strip()
                if text:
                    yield text

    def _all_documents(self) -> Iterator[str]:
        if self.split == "line":
            yield from (t for t in self._lines() if t)
            return
        block: list[str] = []
        for t in self._lines():
            if t is None:
                if block:
                    yield " ".join(block)
                    block = []
            else:
                block.append(t)
        if block:
            yield " ".join(block)

    def documents(self, start: int = 0) -> Iterator[str]:
        return itertools.islice(self._all_documents(), start, None)

    def __iter__(self) -> Iterator[str]:
        return self.documents()

    def __repr__(self) -> str:
        return f"TextFileCorpus({str(self.path)!r}, split={self.split!r}, clean={self.clean!r})"


class TextsCorpus:
    """Documents from an in-memory sequence of strings (blank ones are skipped).

    Without ``identity`` the identity is a hash of the texts, so equal texts share cache
    entries and different texts never do.
    """

    def __init__(self, texts: Sequence[str], *, identity: str | None = None) -> None:
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ValueError(f"TextsCorpus: text {bad[0]} is a {type(texts[bad[0]]).__name__}, "
                             f"not a str")
        self.texts: tuple[str, ...] = tuple(t for t in texts if t.strip())
        self._identity = identity

    @property
    def identity(self) -> str:
        if self._identity is None:
            self._identity = f"texts:n={len(self.texts)}:sha256={_short_hash(self.texts)}"
        return self._identity

    def documents(self, start: int = 0) -> Iterator[str]:
        return iter(self.texts[start:])

    def __iter__(self) -> Iterator[str]:
        return self.documents()

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        return f"TextsCorpus(n={len(self.texts)}, identity={self.identity!r})"


class HFDatasetCorpus:
    """Documents from a Hugging Face dataset (needs the ``datasets`` package and, unless
    the dataset is in the local cache, a network connection; both only when iterated).

    ``HFDatasetCorpus("wikipedia", config="20220301.en", split="train", streaming=True)``
    """

    def __init__(self, name: str, *, config: str | None = None, split: str = "train",
                 text_field: str = "text", revision: str | None = None,
                 streaming: bool = False, identity: str | None = None) -> None:
        self.name = name
        self.config = config
        self.split = split
        self.text_field = text_field
        self.revision = revision
        self.streaming = streaming
        self._identity = identity

    @property
    def identity(self) -> str:
        if self._identity is not None:
            return self._identity
        return (f"hf:{self.name}:config={self.config}:split={self.split}:"
                f"field={self.text_field}:revision={self.revision}")

    def documents(self, start: int = 0) -> Iterator[str]:
        try:
            import datasets  # imported here: optional and slow
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("HFDatasetCorpus needs the 'datasets' package "
                              "(pip install datasets)") from exc
        ds = datasets.load_dataset(self.name, self.config, split=self.split,
                                   revision=self.revision, streaming=self.streaming)
        texts = (self._text(i, rec) for i, rec in enumerate(ds))
        return itertools.islice((t for t in texts if t.strip()), start, None)

    def _text(self, index: int, record: dict) -> str:
        try:
            text = record[self.text_field]
        except KeyError:
            raise KeyError(f"dataset {self.name!r} record {index} has no field "
                           f"{self.text_field!r}; fields: {sorted(record)}") from None
        if not isinstance(text, str):
            raise ValueError(f"dataset {self.name!r} record {index} field {self.text_field!r} "
                             f"is a {type(text).__name__}, not a str")
        return text

    def __iter__(self) -> Iterator[str]:
        return self.documents()

    def __repr__(self) -> str:
        return f"HFDatasetCorpus({self.identity!r})"
