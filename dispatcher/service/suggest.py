"""Suggest: rank the library's answers and the knowledge base's articles for one e-mail (the
*suggested* and *automatic* response modes), and search them from the reply box (*assisted*)
or from the public /help page.

Sits in the service layer; pure computation over scikit-learn (TF-IDF vectors, cosine
similarity), no I/O. What it promises:
- `Ranker.rebuild(answers, articles, examples)` fits the index once per library change (never
  per e-mail); `examples` are past customer e-mails with the answer that was sent to them, so
  an answer is also found through the words customers used, not only through its own.
- `Ranker.rank(text, queue, category)` scores each answer (and article) by its best cosine
  similarity (0..1) over its documents, keeps only answers that serve this queue and category
  (empty lists serve everything), and returns the best `limit`, best first, ties by id.
- Rebuilding swaps the whole index at once: a ranking never sees half of two libraries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dispatcher.domain.answers import PLACEHOLDER, Answer, Article

ANSWER, ARTICLE = "answer", "article"  # kinds of suggestion
TOP = 3  # suggestions shown in the suggested mode
# Character 4-grams inside word boundaries, accents folded, sub-linear term frequency:
# "deliver" finds "delivery", "Sundays" finds "Sunday", in any language, without a stemmer.
# (3- and 4-grams ranked no better on the labelled set, and fit twice as slowly.)
ANALYZER = "char_wb"
NGRAMS = (4, 4)
MAX_QUERY_CHARS = 20_000  # only the start of a very long e-mail is ranked
# Typed searches keep what scores at least this, and at least this share of the best score:
# character n-grams give every text a little similarity ("day" in "Sunday" and "days").
SEARCH_FLOOR = 0.05
SEARCH_RELATIVE = 0.5
_QUOTED = re.compile(r"^\s*>.*$", re.M)


@dataclass(frozen=True, slots=True)
class Suggestion:
    kind: str  # answer | article
    id: str
    title: str
    score: float  # cosine similarity, 0..1


def query_text(subject: str, body: str) -> str:
    """What is ranked of an e-mail: its subject and body, quoted lines (`> ...`) left out."""
    return f"{subject or ''}\n{_QUOTED.sub('', body or '')}"[:MAX_QUERY_CHARS]


def _answer_doc(a: Answer) -> str:
    return PLACEHOLDER.sub(" ", f"{a.title}\n{a.text}")


@dataclass(frozen=True)
class _Target:
    kind: str
    id: str
    title: str
    queues: frozenset[str]
    categories: frozenset[str]


def _numpy() -> Any:
    import numpy  # imported on first use: every `switchboard` command need not pay for it

    return numpy


class _Index:
    def __init__(self, targets: list[_Target], docs: list[str], owners: list[int]) -> None:
        self.targets = targets
        self.owners: Any = None
        self.vectorizer: Any = None
        self.postings = None
        if docs:
            np = _numpy()
            self.owners = np.asarray(owners, dtype=np.intp)
            # scikit-learn takes seconds to import: only when an index is first built.
            from sklearn.feature_extraction.text import TfidfVectorizer

            self.vectorizer = TfidfVectorizer(analyzer=ANALYZER, ngram_range=NGRAMS,
                                              sublinear_tf=True,
                                              strip_accents="unicode", lowercase=True,
                                              dtype=np.float32)
            try:
                # Features x documents: a query touches only the rows of its own n-grams
                # (an inverted index), whatever the size of the library.
                self.postings = self.vectorizer.fit_transform(docs).T.tocsr()
            except ValueError:  # nothing but stop characters: an empty vocabulary
                self.vectorizer = None
        self._masks: dict[tuple[str | None, str | None, frozenset[str]], Any] = {}

    def mask(self, queue: str | None, category: str | None, kinds: frozenset[str]) -> Any:
        key = (queue, category, kinds)
        found = self._masks.get(key)
        if found is None:
            np = _numpy()
            found = np.array([
                t.kind in kinds
                and (queue is None or not t.queues or queue in t.queues)
                and (category is None or not t.categories or category in t.categories)
                for t in self.targets], dtype=bool)
            if len(self._masks) > 1024:
                self._masks.clear()
            self._masks[key] = found
        return found

    def scores(self, text: str) -> Any:
        np = _numpy()
        out = np.zeros(len(self.targets), dtype=np.float32)
        if self.vectorizer is None or not self.targets:
            return out
        q = self.vectorizer.transform([text])
        if q.nnz == 0:
            return out
        sims = (q @ self.postings).toarray().ravel()
        np.maximum.at(out, self.owners, sims)
        return out


class Ranker:
    def __init__(self) -> None:
        self._index = _Index([], [], [])

    @property
    def size(self) -> int:
        return len(self._index.targets)

    def rebuild(self, answers: Iterable[Answer], articles: Iterable[Article] = (),
                examples: Iterable[tuple[str, str]] = ()) -> None:
        targets: list[_Target] = []
        docs: list[str] = []
        owners: list[int] = []
        where: dict[str, int] = {}
        for a in answers:
            if a.retired:
                continue
            where[a.id] = len(targets)
            targets.append(_Target(ANSWER, a.id, a.title, frozenset(a.queues),
                                   frozenset(a.categories)))
            docs.append(_answer_doc(a))
            owners.append(where[a.id])
        for answer_id, text in examples:
            if answer_id in where and text.strip():
                docs.append(text)
                owners.append(where[answer_id])
        for art in articles:
            if art.retired:
                continue
            cats = frozenset({art.category}) if art.category else frozenset()
            targets.append(_Target(ARTICLE, art.id, art.question, frozenset(), cats))
            docs.append(f"{art.question}\n{art.answer}")
            owners.append(len(targets) - 1)
        self._index = _Index(targets, docs, owners)  # one swap: rankings see old or new

    def rank(self, text: str, queue: str | None = None, category: str | None = None,
             limit: int = TOP, kinds: Sequence[str] = (ANSWER,)) -> list[Suggestion]:
        index = self._index
        if not index.targets or limit <= 0:
            return []
        np = _numpy()
        scores = index.scores(text[:MAX_QUERY_CHARS])
        allowed = index.mask(queue, category, frozenset(kinds))
        scores = np.where(allowed, scores, -1.0)
        k = min(limit, int(allowed.sum()))
        if k <= 0:
            return []
        best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        chosen = sorted(best.tolist(), key=lambda i: (-float(scores[i]), index.targets[i].id))
        return [Suggestion(index.targets[i].kind, index.targets[i].id, index.targets[i].title,
                           round(float(scores[i]), 4))
                for i in chosen if scores[i] > 0]

    def search(self, query: str, queue: str | None = None, category: str | None = None,
               limit: int = 10, kinds: Sequence[str] = (ANSWER,)) -> list[Suggestion]:
        """Typed words (the reply box, /help): the same ranking, plus targets whose title
        contains the query when the words alone found too few."""
        found = self.rank(query, queue, category, limit, kinds)
        if found:
            cut = max(SEARCH_FLOOR, found[0].score * SEARCH_RELATIVE)
            found = [s for s in found if s.score >= cut]
        needle = query.strip().lower()
        if len(found) < limit and needle:
            index = self._index
            allowed = index.mask(queue, category, frozenset(kinds))
            seen = {s.id for s in found}
            for i, t in enumerate(index.targets):
                if len(found) >= limit:
                    break
                if allowed[i] and t.id not in seen and needle in t.title.lower():
                    found.append(Suggestion(t.kind, t.id, t.title, 0.0))
        return found
