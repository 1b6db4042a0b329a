"""A synthetic SQuAD 2.0-style dataset: the distill-squad objective's offline default.

Each paragraph states 3-5 facts about 2-3 made-up countries, every fact of a different
relation ("The capital of Zorvia is Kelmar.", "Zorvia was founded in 1742."). Questions ask
one relation of one country, named (one hop) or, in about half of them, described by
another of its facts (two hops: "What city is the capital of the country founded in
1742?"). About half are unanswerable, always as *hard negatives*: the question names a
relation the paragraph states for another country, or a country of the paragraph with a
relation the paragraph does not state, or (two hops) describes a country by a value the
paragraph does not state; so answering needs the question's country and relation to be
matched to a fact, not just spotted. Answers are one word (two for a leader's name), so a
tiny BERT learns the task in seconds while a poor configuration collapses to "no answer".
Two hops make capacity pay at the small end: a one-layer student with one attention head
ends at exact 65, with four at 76.5 (the teacher: 76.25), so the study's front holds
several sizes, where on one-hop questions alone the one-head student matched the teacher.

The output is the official SQuAD 2.0 ``data`` list; everything depends only on the seed.
"""

from __future__ import annotations

import random
from typing import Any, NamedTuple

SOURCE_ID = "synthetic-squad-v2"
GENERATOR_VERSION = 2
"""Bump whenever the generated text changes: it is part of the objective's cache keys."""

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "n", "r", "l", "s")


def _words(
    rng: random.Random, count: int, syllables: int, suffix: str, taken: set[str]
) -> list[str]:
    """``count`` distinct capitalised pseudo-words (CV syllables + coda + suffix), not in taken."""
    out: list[str] = []
    while len(out) < count:
        stem = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
        stem += rng.choice(_CODAS)
        if suffix[:1] in _VOWELS and stem[-1] in _VOWELS:
            stem = stem[:-1]  # "Zori" + "ia" -> "Zoria", not "Zoriia"
        word = (stem + suffix).capitalize()
        if word not in taken:
            taken.add(word)
            out.append(word)
    return out


def _vocabularies() -> dict[str, list[str]]:
    """The fixed name pools (seed-independent, so every split shares one vocabulary)."""
    rng = random.Random(20240917)
    taken: set[str] = set()
    return {
        "country": _words(rng, 30, 2, "ia", taken),
        "city": _words(rng, 12, 2, "", taken),
        "river": _words(rng, 10, 2, "o", taken),
        "first": _words(rng, 8, 2, "", taken),
        "last": _words(rng, 8, 2, "", taken),
        "language": _words(rng, 10, 2, "ish", taken),
        "currency": [w.lower() for w in _words(rng, 10, 1, "ek", taken)],
        "color": ["red", "blue", "green", "yellow", "white", "black", "orange", "purple"],
        "year": [str(y) for y in range(1550, 1900, 25)],
        "population": [f"{n}000" for n in range(20, 100, 8)],
    }


_POOLS = _vocabularies()

COUNTRIES: tuple[str, ...] = tuple(_POOLS["country"])


class Relation(NamedTuple):
    """A relation's value pool and its phrasings; ``{e}`` is the country, ``{v}`` the value.

    ``bridge`` names a country by its value of this relation, in two-hop questions ("the
    country founded in {v}"): "What city is the capital of the country founded in 1742?"
    """

    pool: str
    facts: tuple[str, ...]
    questions: tuple[str, ...]
    bridge: str


RELATIONS: dict[str, Relation] = {
    "capital": Relation(
        "city",
        ("The capital of {e} is {v}.", "{e}'s capital is {v}.", "{v} is the capital of {e}."),
        ("What city is the capital of {e}?", "Which city is {e}'s capital?"),
        "the country whose capital is {v}",
    ),
    "river": Relation(
        "river",
        ("The longest river in {e} is the {v}.", "The {v} is the longest river in {e}."),
        ("What river is the longest in {e}?", "Which river is the longest one in {e}?"),
        "the country where the {v} is the longest river",
    ),
    "founded": Relation(
        "year",
        ("{e} was founded in {v}.", "In {v}, {e} was founded."),
        ("What year was {e} founded in?", "Which year was {e} founded?"),
        "the country founded in {v}",
    ),
    "leader": Relation(
        "leader",
        ("The leader of {e} is {v}.", "{e} is led by {v}."),
        ("Who is the leader of {e}?", "Who leads {e}?"),
        "the country led by {v}",
    ),
    "language": Relation(
        "language",
        ("People in {e} speak {v}.", "The language of {e} is {v}."),
        ("What language is spoken in {e}?", "Which language do people in {e} speak?"),
        "the country where people speak {v}",
    ),
    "currency": Relation(
        "currency",
        ("The currency of {e} is the {v}.", "{e} pays with the {v}."),
        ("What currency does {e} use?", "Which currency is used in {e}?"),
        "the country that pays with the {v}",
    ),
    "flag": Relation(
        "color",
        ("The flag of {e} is {v}.", "{e} has a {v} flag."),
        ("What color is the flag of {e}?", "Which color is {e}'s flag?"),
        "the country with a {v} flag",
    ),
    "population": Relation(
        "population",
        ("{e} has {v} people.", "About {v} people live in {e}."),
        ("How many people live in {e}?", "How many people does {e} have?"),
        "the country with {v} people",
    ),
}
_RELATION_NAMES = tuple(RELATIONS)
_ENTITIES = (2, 3)  # countries per paragraph (inclusive range)
_FACTS = (3, 5)  # facts per paragraph, each of a different relation
_QUESTIONS = (2, 4)  # questions per paragraph
_OTHER_ENTITY_SHARE = 0.3  # unanswerable: another country's relation (else: an unstated one)
_TWO_HOP_SHARE = 0.5  # questions that name the country by another of its facts


def _value(rng: random.Random, relation: str) -> str:
    pool = RELATIONS[relation].pool
    if pool == "leader":
        return f"{rng.choice(_POOLS['first'])} {rng.choice(_POOLS['last'])}"
    return rng.choice(_POOLS[pool])


def _paragraph(
    rng: random.Random, kinds: list[bool], index: int, prefix: str
) -> tuple[list[str], dict[str, Any]]:
    """One paragraph with one question per entry of ``kinds`` (True = unanswerable)."""
    entities = rng.sample(_POOLS["country"], rng.randint(*_ENTITIES))
    relations = rng.sample(_RELATION_NAMES, rng.randint(max(_FACTS[0], len(entities)), _FACTS[1]))
    owners = entities + [rng.choice(entities) for _ in relations[len(entities) :]]
    facts = [(owner, rel, _value(rng, rel)) for owner, rel in zip(owners, relations, strict=False)]
    rng.shuffle(facts)
    sentences: list[str] = []
    starts: dict[tuple[str, str], int] = {}
    offset = 0
    for owner, rel, value in facts:
        template = rng.choice(RELATIONS[rel].facts)
        sentence = template.format(e=owner, v=value)
        starts[(owner, rel)] = offset + len(template.split("{v}")[0].format(e=owner))
        sentences.append(sentence)
        offset += len(sentence) + 1
    context = " ".join(sentences)
    stated = {(owner, rel): value for owner, rel, value in facts}
    missing = [rel for rel in _RELATION_NAMES if rel not in relations]

    qas: list[dict[str, Any]] = []
    asked: set[tuple[str, str]] = set()
    for impossible in kinds:
        for _ in range(100):
            two_hop = rng.random() < _TWO_HOP_SHARE and _two_hop(rng, stated, impossible)
            if two_hop:
                subject, rel, answer_of = two_hop
            elif not impossible:
                subject, rel = rng.choice(list(stated))
                answer_of = subject
            elif not missing or rng.random() < _OTHER_ENTITY_SHARE:  # another country's fact
                owner, rel = rng.choice(list(stated))
                subject, answer_of = rng.choice([e for e in entities if e != owner]), None
            else:  # a country of the paragraph, asked a relation never stated here
                subject, rel, answer_of = rng.choice(entities), rng.choice(missing), None
            if (subject, rel) not in asked:
                break
        asked.add((subject, rel))
        answers: list[dict[str, Any]] = []
        if answer_of is not None:
            text, start = stated[(answer_of, rel)], starts[(answer_of, rel)]
            assert context[start : start + len(text)] == text, (context, text, start)
            answers.append({"text": text, "answer_start": start})
        templates = RELATIONS[rel].questions
        if two_hop:  # "Which city is the country founded in 1742's capital?": not that one
            templates = tuple(t for t in templates if "{e}'s" not in t)
        qas.append(
            {
                "id": f"{prefix}-{index:05d}-{len(qas)}",
                "question": rng.choice(templates).format(e=subject),
                "answers": answers,
                "is_impossible": impossible,
            }
        )
    return entities, {"context": context, "qas": qas}


def _two_hop(
    rng: random.Random, stated: dict[tuple[str, str], str], impossible: bool
) -> tuple[str, str, str | None] | None:
    """A two-hop question: ``(subject, relation, answer owner)``, the subject naming a
    country by another of its facts ("the country founded in 1742"); None where the
    paragraph has no such question.

    Answerable: the country the bridge names has the asked relation. Unanswerable, half
    each: the bridge names a country of the paragraph that lacks the asked relation
    (another one may have it), or a value the paragraph does not state (its relation
    stated with another value, the asked relation stated for some country)."""
    facts = list(stated)
    if not impossible:
        linked = [(b, r) for b in facts for r in facts if b[0] == r[0] and b[1] != r[1]]
        if not linked:
            return None
        (owner, bridge), (_, rel) = rng.choice(linked)
        return RELATIONS[bridge].bridge.format(v=stated[(owner, bridge)]), rel, owner
    if rng.random() < 0.5:  # a country of the paragraph that lacks the asked relation
        lacking = [(b, r) for b in facts for r in _RELATION_NAMES
                   if r != b[1] and (b[0], r) not in stated]
        if not lacking:
            return None
        (owner, bridge), rel = rng.choice(lacking)
        return RELATIONS[bridge].bridge.format(v=stated[(owner, bridge)]), rel, None
    others = [(b, r) for b in facts for r in facts if b[1] != r[1]]  # a value not stated
    if not others:
        return None
    (owner, bridge), (_, rel) = rng.choice(others)
    value = stated[(owner, bridge)]
    while value == stated[(owner, bridge)]:
        value = _value(rng, bridge)
    return RELATIONS[bridge].bridge.format(v=value), rel, None


def _generate(
    n_questions: int,
    rng: random.Random,
    unanswerable_fraction: float,
    prefix: str,
    exclude: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    if n_questions < 0 or not 0.0 <= unanswerable_fraction <= 1.0:
        raise ValueError("n_questions must be >= 0 and unanswerable_fraction in [0, 1]")
    n_impossible = round(n_questions * unanswerable_fraction)
    kinds = [True] * n_impossible + [False] * (n_questions - n_impossible)
    rng.shuffle(kinds)
    data: list[dict[str, Any]] = []
    seen = set(exclude)
    position = 0
    while position < n_questions:
        take = kinds[position : position + rng.randint(*_QUESTIONS)]
        entities, paragraph = _paragraph(rng, take, len(data), prefix)
        if paragraph["context"] in seen:  # contexts are unique, and disjoint from ``exclude``
            continue
        seen.add(paragraph["context"])
        data.append({"title": " and ".join(entities), "paragraphs": [paragraph]})
        position += len(take)
    return data


def generate(
    n_questions: int, seed: int, *, unanswerable_fraction: float = 0.5
) -> list[dict[str, Any]]:
    """``n_questions`` questions in SQuAD 2.0's ``data`` format, deterministic in ``seed``.

    Exactly ``round(n_questions * unanswerable_fraction)`` are unanswerable (shuffled in).
    """
    rng = random.Random(f"{SOURCE_ID}/{GENERATOR_VERSION}/{seed}")
    return _generate(n_questions, rng, unanswerable_fraction, f"s{seed}")


def generate_splits(
    n_train: int = 3000, n_eval: int = 600, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A train and an eval set from separate random streams, with no context in common."""
    eval_rng = random.Random(f"{SOURCE_ID}/{GENERATOR_VERSION}/{seed}/eval")
    eval_data = _generate(n_eval, eval_rng, 0.5, f"eval{seed}")
    contexts = frozenset(p["context"] for article in eval_data for p in article["paragraphs"])
    train_rng = random.Random(f"{SOURCE_ID}/{GENERATOR_VERSION}/{seed}/train")
    return _generate(n_train, train_rng, 0.5, f"train{seed}", contexts), eval_data


def generate_test(
    n_questions: int, seed: int, exclude: frozenset[str]
) -> list[dict[str, Any]]:
    """Held-out questions of the same kind, from a stream of their own: no context in
    common with ``exclude`` (the train and eval sets' contexts)."""
    test_rng = random.Random(f"{SOURCE_ID}/{GENERATOR_VERSION}/{seed}/test")
    return _generate(n_questions, test_rng, 0.5, f"test{seed}", exclude)


def iter_questions(data: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Flatten a ``data`` list into ``(context, qa)`` pairs, in order."""
    return [
        (p["context"], qa) for article in data for p in article["paragraphs"] for qa in p["qas"]
    ]
