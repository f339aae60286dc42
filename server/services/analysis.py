"""Pure functions behind the labs loop: grouping explanations into causes, judging feedback the way a
careful reviewer would, and scoring agreement (with Cohen's kappa) before and after a change."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

_WORD = re.compile(r"[a-z][a-z'-]{2,}")
_QUOTED = re.compile(r"[\"“'‘]([^\"”'’]{8,})[\"”'’]")
_TIME = re.compile(r"\b\d{1,2}:[0-5]\d\b")
_STOP = frozenset({
    "about", "after", "agent", "all", "also", "and", "any", "are", "ask", "asked", "asks", "because", "been",
    "before", "being", "but", "call", "caller", "can", "could", "customer", "did", "does", "done", "during",
    "each", "for", "from", "had", "has", "have", "into", "it's", "its", "just", "may", "metric", "might",
    "more", "most", "not", "one", "only", "other", "over", "per", "said", "say", "says", "should", "some",
    "such", "than", "that", "the", "their", "them", "then", "there", "they", "this", "turn", "turns", "two",
    "under", "user", "very", "was", "were", "what", "when", "where", "which", "while", "who", "will", "with",
    "would", "you", "your",
})
_VAGUE = re.compile(r"^\W*(this is |that's |it's |it is )?(wrong|incorrect|bad|not right|disagree|no|nope)\W*$",
                    re.IGNORECASE)


def content_words(text: str) -> frozenset[str]:
    quoted_free = _QUOTED.sub(" ", text.lower())
    return frozenset(w for w in _WORD.findall(_TIME.sub(" ", quoted_free)) if w not in _STOP)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


@dataclass
class Cluster:
    members: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    words: Counter[str] = field(default_factory=Counter)

    def signature(self, top: int = 6) -> list[str]:
        return [w for w, _ in self.words.most_common(top)]

    def representative(self) -> str:
        """The member text closest to the cluster's common words."""
        common = set(self.signature(10))
        return max(self.texts, key=lambda t: len(content_words(t) & common))


def cluster_explanations(items: Sequence[tuple[int, str]], threshold: float = 0.3) -> list[Cluster]:
    """Greedy, deterministic grouping of (id, explanation) by shared content words, largest first.

    Words that most explanations share are the judge's boilerplate ("the metric fails because...")
    and say nothing about the cause, so they are left out before grouping."""
    bags = [(item_id, text, content_words(text)) for item_id, text in items]
    frequency = Counter(word for _, _, words in bags for word in words)
    boilerplate = {w for w, n in frequency.items() if len(bags) >= 6 and n > 0.7 * len(bags)}
    clusters: list[Cluster] = []
    for item_id, text, all_words in bags:
        words = all_words - boilerplate or all_words
        best, best_score = None, 0.0
        for cluster in clusters:
            score = _jaccard(words, frozenset(cluster.signature(12)))
            if score > best_score:
                best, best_score = cluster, score
        if best is None or best_score < threshold:
            best = Cluster()
            clusters.append(best)
        best.members.append(item_id)
        best.texts.append(text)
        best.words.update(words)
    return sorted(clusters, key=lambda c: (-len(c.members), c.members[0]))


@dataclass(frozen=True)
class FeedbackVerdict:
    ok: bool
    problems: tuple[str, ...]
    hint: str


def check_disagreement(reason: str, *, whole_call: bool = False) -> FeedbackVerdict:
    """A disagreement must be more than "this is wrong" and point at the transcript (a time or a quote). A score
    (`whole_call`) rates the whole call, so there the reason may describe it instead of citing one moment:
    "it should be 1.5, the agent only repeated a scripted apology" is feedback an optimizer can use."""
    text = reason.strip()
    problems: list[str] = []
    # A quoted moment is substance: it shows what the judge misread, in the call's own words.
    if not text or _VAGUE.match(text) or (len(content_words(text)) < 3 and not _QUOTED.search(text)):
        problems.append("it only says the result is wrong, not why")
    if not whole_call and not (_TIME.search(text) or _QUOTED.search(text)):
        problems.append("it does not point at a transcript moment (a time like 01:12 or a quoted line)")
    hint = ('Ask the person for the moment and the reason, e.g. "At 01:12 the agent asked for postcode and '
            'address together; confirming related details is one question, so this should be TRUE."')
    if whole_call:
        hint = ('Ask the person what in the call earns the right score, e.g. "It should be 1.5: the agent only '
                'repeated a scripted apology and never acknowledged the caller\'s situation."')
    return FeedbackVerdict(ok=not problems, problems=tuple(problems), hint=hint)


def mentions_outcome(reason: str, expected_label: str) -> bool:
    lowered = reason.lower()
    return expected_label.lower() in lowered or any(
        w in lowered for w in ("should be", "should have", "correct", "pass", "fail", "n/a", "not applicable"))


@dataclass(frozen=True)
class Agreement:
    total: int
    agreed: int
    rate: float
    kappa: float


def agreement(judged: Sequence[str], truth: Sequence[str]) -> Agreement:
    """Share of results equal to the person's expected value, and Cohen's kappa between the two raters."""
    total = len(truth)
    if total == 0:
        return Agreement(0, 0, 0.0, 0.0)
    agreed = sum(1 for a, b in zip(judged, truth, strict=True) if a == b)
    observed = agreed / total
    judged_counts, truth_counts = Counter(judged), Counter(truth)
    expected = sum(judged_counts[k] * truth_counts[k] for k in set(judged) | set(truth)) / (total * total)
    kappa = 1.0 if expected >= 1.0 else (observed - expected) / (1 - expected)
    return Agreement(total, agreed, round(observed, 3), round(kappa, 3))


def confusion(judged: Sequence[str], truth: Sequence[str]) -> dict[str, dict[str, int]]:
    """Rows: the person's expected value; columns: the metric's result."""
    labels = sorted(set(judged) | set(truth))
    matrix = {t: dict.fromkeys(labels, 0) for t in labels}
    for j, t in zip(judged, truth, strict=True):
        matrix[t][j] += 1
    return matrix
