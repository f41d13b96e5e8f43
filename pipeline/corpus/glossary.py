"""ID-gloss names for the synthetic lexicon, in ASLLRP SignStream conventions.

A synthetic sign needs a name that exercises every convention real annotations use, so that tokenisation,
vocabularies, scoring and reports are tested on real gloss strings: indexing (`IX-1p`), possessives
(`POSS-1p`), lexicalised fingerspelling (`#IF`), names (`ns-fs-MARY`), alternates (`DATE/DESSERT`),
compounds (`EACH+ONE`), variants (`HEADBAND_2`), particles (`part:indef`) and classifiers (`DCL:"long"`).
A gloss is one whitespace-free token and is never split further.
"""

from __future__ import annotations

import numpy as np

# Always in the lexicon (if it has room), so every convention is present even in a 100-gloss corpus.
CONVENTION_GLOSSES: tuple[str, ...] = (
    "IX-1p", "IX-2p", "IX-3p:i", "POSS-1p", "part:indef", "#IF", "#NO", "#BBQ",
    "ns-fs-MARY", "ns-fs-JESSICA", "fs-JOHN", "DATE/DESSERT", "FAVORITE/PREFER", "DURING/WHILE",
    "EACH+ONE", "HEADBAND_2", "QMwg", "SECOND-IN-LIST", "ONE-MONTH", 'DCL:"long"',
)  # fmt: skip

# Ordinary lexical glosses (English-based ID glosses as ASLLRP writes them).
WORDS: tuple[str, ...] = (
    "ENJOY", "CHAT", "FRIEND", "WITH", "SAME", "OTHER", "PIE", "VEGETABLE", "HAVE", "ONE", "PAST", "SISTER",
    "GET", "FOR", "BIRTHDAY", "GUARANTEE", "FUTURE", "DECORATE", "BAKING-SPRINKLES", "AND", "BROTHER",
    "MOTHER", "FATHER", "HOUSE", "SCHOOL", "TEACHER", "STUDENT", "BOOK", "READ", "WRITE", "WORK", "HOME",
    "GO", "COME", "WANT", "NEED", "LIKE", "LOVE", "KNOW", "THINK", "UNDERSTAND", "SEE", "LOOK", "TELL",
    "ASK", "ANSWER", "QUESTION", "WHO", "WHAT", "WHERE", "WHEN", "WHY", "HOW", "YES", "NOT", "FINISH",
    "WILL", "CAN", "MUST", "SHOULD", "MAYBE", "TIME", "DAY", "NIGHT", "MORNING", "AFTERNOON", "TOMORROW",
    "YESTERDAY", "NOW", "LATER", "BEFORE", "AFTER", "WEEK", "MONTH", "YEAR", "EAT", "DRINK", "WATER",
    "COFFEE", "TEA", "MILK", "BREAD", "APPLE", "CANDY", "RESTAURANT", "STORE", "BUY", "SELL", "MONEY",
    "PAY", "CHEAP", "EXPENSIVE", "CAR", "DRIVE", "BUS", "TRAIN", "AIRPLANE", "TRAVEL", "CITY", "COUNTRY",
    "DOG", "CAT", "BIRD", "HORSE", "FISH", "TREE", "FLOWER", "RAIN", "SNOW", "SUN", "HOT", "COLD", "WARM",
    "HAPPY", "SAD", "ANGRY", "TIRED", "SICK", "HURT", "DOCTOR", "HOSPITAL", "NURSE", "MEDICINE", "HELP",
    "PLAY", "GAME", "BASKETBALL", "FOOTBALL", "SWIM", "RUN", "WALK", "SIT", "STAND", "SLEEP", "WAKE-UP",
    "SHOWER", "CLOTHES", "SHIRT", "SHOES", "HAT", "COLOR", "RED", "BLUE", "GREEN", "YELLOW", "BLACK",
    "WHITE", "BIG", "SMALL", "TALL", "SHORT", "LONG", "NEW", "OLD", "YOUNG", "GOOD", "BAD", "BEAUTIFUL",
    "UGLY", "RIGHT", "WRONG", "TRUE", "FALSE", "EASY", "HARD", "FAST", "SLOW", "MANY", "FEW", "ALL",
    "NONE", "MORE", "AGAIN", "ALWAYS", "NEVER", "SOMETIMES", "OFTEN", "FAMILY", "BABY", "CHILDREN",
    "MAN", "WOMAN", "BOY", "GIRL", "PEOPLE", "DEAF", "HEARING", "SIGN", "LANGUAGE", "ENGLISH", "NAME",
    "MEET", "NICE", "THANK-YOU", "PLEASE", "SORRY", "HELLO", "BYE", "MARRY", "DIVORCE", "WEDDING",
    "PARTY", "MOVIE", "MUSIC", "DANCE", "PAINT", "DRAW", "PHOTO", "COMPUTER", "PHONE", "EMAIL", "LETTER",
    "NEWSPAPER", "STORY", "TRUTH", "LIE", "FORGET", "REMEMBER", "LEARN", "TEACH", "PRACTICE", "TRY",
    "START", "STOP", "WAIT", "CHANGE", "OPEN", "CLOSE", "GIVE", "TAKE", "BRING", "SHOW", "FIND", "LOSE",
    "WIN", "BORROW", "LEND", "CALL", "INVITE", "VISIT", "LIVE", "DIE", "BORN", "GROW", "FEEL", "HEAR",
    "SMELL", "TASTE", "TOUCH", "HUNGRY", "THIRSTY", "FULL", "EMPTY", "FIRE", "WIND", "OCEAN", "MOUNTAIN",
    "RIVER", "BRIDGE", "ROAD", "DOOR", "WINDOW", "TABLE", "CHAIR", "BED", "KITCHEN", "ROOM", "OFFICE",
    "MEETING", "BOSS", "PROBLEM", "IDEA", "PLAN", "DECIDE", "AGREE", "ARGUE", "FIGHT", "PEACE", "WAR",
    "GOVERNMENT", "LAW", "POLICE", "CHURCH", "GOD", "HEAVEN", "WORLD", "SPRING", "SUMMER", "FALL",
    "WINTER", "HOLIDAY", "VACATION", "CHRISTMAS", "THANKSGIVING", "FINE", "BORED", "EXCITED", "SCARED",
    "SURPRISE", "PROUD", "JEALOUS", "WORRY", "CAREFUL", "LAZY", "SMART", "STUPID", "FUNNY", "SERIOUS",
)  # fmt: skip
NAME_LETTERS: tuple[str, ...] = ("DONNA", "LISA", "PAT", "BOB", "ANN", "TOM", "SUE", "MIKE", "KIM", "JOE")
FINGERSPELLED: tuple[str, ...] = ("#OK", "#ALL", "#JOB", "#BACK", "#CAR", "#DO", "#EARLY", "#TOY", "#WHAT", "#BUSY")


def gloss_names(n: int, rng: np.random.Generator) -> list[str]:
    """`n` distinct gloss names: the convention glosses first, then a seeded mix of words and their forms.

    Beyond the word list (e.g. 1000- and 2000-gloss corpora) names keep the same conventions: variants
    (`WORD_2`), compounds (`A+B`), alternates (`A/B`) and more fingerspelled names, so a large corpus has the
    same string shapes as ASLLRP.
    """
    if n < 1:
        raise ValueError(f"a lexicon needs at least one gloss, got n={n}")
    names: list[str] = list(CONVENTION_GLOSSES[:n])
    pool = list(WORDS) + [f"ns-fs-{w}" for w in NAME_LETTERS] + list(FINGERSPELLED)
    pool = [pool[i] for i in rng.permutation(len(pool))]
    taken = set(names)
    for name in pool:
        if len(names) >= n:
            break
        if name not in taken:
            names.append(name)
            taken.add(name)
    words = list(WORDS)
    while len(names) < n:  # synthesise more names with the same conventions
        a, b = (words[i] for i in rng.choice(len(words), size=2, replace=False))
        form = int(rng.integers(4))
        name = (f"{a}_{int(rng.integers(2, 5))}", f"{a}+{b}", f"{a}/{b}", f"{a}-{b}")[form]
        if name not in taken:
            names.append(name)
            taken.add(name)
    return names
