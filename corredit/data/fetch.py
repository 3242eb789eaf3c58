"""Download a named public edit set once into a user cache, checking its size and SHA-256.

Usage::

    from corredit.data.fetch import SOURCES, DataSource, fetch_dataset
    SOURCES.names()                          # ['counterfact-edit', 'known-1000', ...]
    path = fetch_dataset("known-1000")       # ~/.cache/corredit/data/known-1000/known_1000.json
    corredit data fetch known-1000           # the same from the shell

    # a source of one's own, in a registry of one's own
    from corredit.registry import Registry
    mine = Registry("data source")
    mine.add("facts", DataSource("facts", "https://example.org/facts.jsonl", sha256="...",
                                 size=1234))
    fetch_dataset("facts", sources=mine, cache_dir="cache/")

Nothing is downloaded unless :func:`fetch_dataset` is called. A file already in the
cache with the right size and hash is returned without a network call; a cached file
that does not match is downloaded again. A download is written to a temporary file,
checked, and only then moved into place, so the cache never holds a partial or
unverified file. The cache folder is ``$CORREDIT_CACHE/data`` when that variable is set,
else ``$XDG_CACHE_HOME/corredit/data`` or ``~/.cache/corredit/data``.

The built-in sources are commit-pinned GitHub copies of the files described in the
shared data READMEs (CounterFact flattened splits, ROME's known facts, zsRE subsets,
MQuAKE-hard, ConflictEdit/RoundEdit), so their hashes cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import hashlib
import logging
import os
from pathlib import Path
import urllib.error
import urllib.request

from corredit.registry import Registry

__all__ = ["DataSource", "SOURCES", "FetchError", "fetch_dataset", "default_cache_dir",
           "verify_file"]

logger = logging.getLogger("corredit.data")


class FetchError(ValueError):
    """A download failed or did not match its declared size or hash."""


@dataclass(frozen=True)
class DataSource:
    """A named downloadable file: where it lives, its size in bytes and its SHA-256."""

    name: str
    url: str
    sha256: str
    size: int
    filename: str | None = None
    description: str = ""
    license: str = ""

    @property
    def file_name(self) -> str:
        """The name the file gets in the cache."""
        return self.filename or self.url.rstrip("/").rsplit("/", 1)[-1] or self.name


SOURCES: Registry[DataSource] = Registry(
    "data source", hint="Register one with SOURCES.add(name, DataSource(...))")


def _github(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


_KS = ("Jometeorie/KnowledgeSpread", "51d7402617c2e52bde0dc11b76e400c3725a181a")
_PITFALLS = ("zjunlp/PitfallsKnowledgeEditing", "0cf7acaf27205e99b105991c4c89c16076125393")
_BUILTIN = (
    DataSource("counterfact-train", _github(*_KS, "data/counterfact/counterfact-train.json"),
               "f7d443ffb0c5da6cbe816cdac45281ccb3f204b8a840f00d07a4aafa949bcd76", 3949873,
               description="CounterFact, flattened layout, 10,000 records", license="MIT (ROME)"),
    DataSource("counterfact-val", _github(*_KS, "data/counterfact/counterfact-val.json"),
               "42b44645471020a9419d183deb9e113e82941380046861770ea0083dabd13982", 760303,
               description="CounterFact, flattened layout, 1,919 records", license="MIT (ROME)"),
    DataSource("counterfact-edit", _github(*_KS, "data/counterfact/counterfact-edit.json"),
               "bfe31a7081932739406e282bb625d74222549c3386c15b1df3dfbc3978c69eec", 3950774,
               description="CounterFact, flattened layout, 10,000 records", license="MIT (ROME)"),
    DataSource("known-1000", _github("kmeng01/rome", "f772b607179061bf046c2e79f0c87eac5422006c",
                                     "dsets/compiled/known_1000.json"),
               "61daca55318bb5260c1e62e133debef9102c7b278bbc7b19dd2ac655543f333a", 343229,
               description="ROME's known facts, 1,209 records", license="MIT"),
    DataSource("zsre-train-1k", _github(*_KS, "data/zsre/zsre_mend_train-1k.json"),
               "e62596101d8ed551889c26c0d2a5277f92eaef3b14416d8eaee39b04a244ab60", 537970,
               description="zsRE (MEND layout), 1,000 train records"),
    DataSource("zsre-eval-portability",
               _github("JasonForJoy/Model-Editing-Hurt", "82614b0414cfe6284ba0b136174f00716a4fe531",
                       "edited-data/zsre_mend_eval_portability_gpt4.json"),
               "0cf155da229b2eccae19fcfe5f7a09523363d357f5f15508d1521f495ad5ecd9", 842861,
               description="zsRE (MEND layout) eval subset with portability, 1,037 records"),
    DataSource("mquake-hard",
               _github("wangywUST/DeepEdit", "c90b29588dec8325a6481054e63bf10baf3cff57",
                       "datasets/MQuAKE-hard.json"),
               "fc78dc7bec4625d3ce6e2923acae7f1920691b0b23e663182bf799f2856f2a11", 1943567,
               description="MQuAKE-hard, 429 four-edit cases"),
    DataSource("pitfalls-coverage", _github(*_PITFALLS, "data/GPT-J/coverage_edit.json"),
               "2122e65f4d5f9fa62dcec59c9010f6aaf10bc297c89ae51cdb0e1c1e8ccab0ac", 2395576,
               description="ConflictEdit coverage pairs, 2,500", license="MIT"),
    DataSource("pitfalls-reverse", _github(*_PITFALLS, "data/GPT-J/reverse_edit.json"),
               "1b2b967db5a135947e4c56bd3ff14f942fa4aa18f1532e842d0195dcf40bc78e", 3077247,
               description="ConflictEdit reverse pairs, 2,500", license="MIT"),
    DataSource("pitfalls-composite-gptj", _github(*_PITFALLS, "data/GPT-J/composite_edit.json"),
               "1f108f707668c973f8c4a498a2200174b4bca71a3dfc4f8779de399bd1701afc", 3574226,
               description="ConflictEdit composite pairs for GPT-J, 2,500", license="MIT"),
    DataSource("pitfalls-composite-gpt2xl", _github(*_PITFALLS, "data/GPT2-XL/composite_edit.json"),
               "cede1cca203ae223ba8fe1b7b784ac5a18fe8da2a48a014e354e61165cdfc42c", 2928753,
               description="ConflictEdit composite pairs for GPT2-XL, 2,000", license="MIT"),
    DataSource("pitfalls-round-easy-gptj", _github(*_PITFALLS, "data/GPT-J/easy.json"),
               "ba6e7335c3c3f5b096d2dd986a16606d9d859666ab2563cc11b26b8215ce6ec2", 1282154,
               description="RoundEdit easy for GPT-J, 2,500", license="MIT"),
    DataSource("pitfalls-round-hard-gptj", _github(*_PITFALLS, "data/GPT-J/hard.json"),
               "50ef6e5547898f9e97e85c255458a8928cccef378b44520faff401b876766253", 1255675,
               description="RoundEdit hard for GPT-J, 2,500", license="MIT"),
    DataSource("pitfalls-round-easy-gpt2xl", _github(*_PITFALLS, "data/GPT2-XL/easy.json"),
               "9e334997a8ee9a1f7948507f5eaad84462d09f2ce9ff64c76c0a12debcd0aa7b", 1249052,
               description="RoundEdit easy for GPT2-XL, 2,500", license="MIT"),
    DataSource("pitfalls-round-hard-gpt2xl", _github(*_PITFALLS, "data/GPT2-XL/hard.json"),
               "0919ac18cca9ab5c9ec39ae8d6d080123a5a8b1fac28813e9d30ca9df3a96d59", 1269437,
               description="RoundEdit hard for GPT2-XL, 2,500", license="MIT"),
)
for _src in _BUILTIN:
    SOURCES.add(_src.name, _src)
del _src


def default_cache_dir() -> Path:
    """Where fetched files go (see the module doc)."""
    from corredit.paths import cache_root

    return cache_root() / "data"


def verify_file(path: Path, source: DataSource) -> str | None:
    """None when ``path`` has the source's size and hash, else what differs."""
    size = path.stat().st_size
    if size != source.size:
        return f"size {size} bytes, expected {source.size}"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != source.sha256.lower():
        return f"SHA-256 {h.hexdigest()}, expected {source.sha256.lower()}"
    return None


def fetch_dataset(source: str | DataSource, *, cache_dir: str | Path | None = None,
                  sources: Registry[DataSource] | None = None, timeout: float = 60.0,
                  progress: Callable[[int, int], None] | None = None) -> Path:
    """The path of ``source`` in the cache, downloading and verifying it when needed.

    ``source`` is a name in ``sources`` (default :data:`SOURCES`) or a
    :class:`DataSource`. ``progress(done_bytes, total_bytes)`` is called while
    downloading. Raises :class:`FetchError` when the download fails or does not match.
    """
    src = source if isinstance(source, DataSource) else (sources or SOURCES).get(source)
    if not src.url.startswith(("http://", "https://")):
        raise FetchError(f"source {src.name!r}: only http(s) URLs are fetched, got {src.url!r}")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dest = folder / src.name / src.file_name
    if dest.is_file():
        why = verify_file(dest, src)
        if why is None:
            return dest
        logger.warning("%s: cached file does not match (%s); downloading it again", dest, why)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        _download(src, tmp, timeout, progress)
        why = verify_file(tmp, src)
        if why is not None:
            raise FetchError(f"source {src.name!r} from {src.url}: the download has {why}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _download(src: DataSource, tmp: Path, timeout: float,
              progress: Callable[[int, int], None] | None) -> None:
    request = urllib.request.Request(src.url, headers={"User-Agent": "corredit"})
    done = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp, open(tmp, "wb") as out:
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                done += len(chunk)
                if done > src.size:
                    raise FetchError(f"source {src.name!r} from {src.url}: the download is "
                                     f"larger than the declared {src.size} bytes")
                out.write(chunk)
                if progress is not None:
                    progress(done, src.size)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"source {src.name!r}: could not download {src.url}: {reason}") from None
