"""Signs as bundles of phonological parameters, and the lexicon of the synthetic signer.

Each sign is handshape (+ optional handshape change), location, movement (with repetition), palm
orientation, one or two hands, and a non-manual marker, as in Stokoe/Battison phonology. The lexicon
deliberately contains minimal pairs: signs that differ in exactly one parameter, which is what makes
real sign recognition hard. Fingerspelled glosses (`#IF`, `ns-fs-MARY`) are realised as a sequence of
letter handshapes instead.

Inventory values are in degrees (handshapes) and metres (locations, for the reference body).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from pipeline.corpus.glossary import gloss_names

# --- handshapes: per-finger flexion (MCP, PIP, DIP) in degrees, spread 0..1, thumb (oppose, abduct, flex) ----
_STRAIGHT, _FIST, _C, _O = (0, 0, 0), (85, 95, 60), (35, 45, 25), (50, 60, 40)
_BENT, _HOOK, _CLAW, _FLAT_O = (80, 5, 5), (15, 95, 70), (20, 60, 40), (55, 25, 10)
_T_SIDE, _T_ACROSS, _T_OUT = (0, 0, 0), (60, -10, 30), (0, 35, 0)
_T_CURVED, _T_TOUCH, _T_TUCKED = (35, 10, 20), (55, 0, 30), (70, -10, 45)


@dataclass(frozen=True)
class Handshape:
    index: tuple[float, float, float]
    middle: tuple[float, float, float]
    ring: tuple[float, float, float]
    pinky: tuple[float, float, float]
    spread: float
    thumb: tuple[float, float, float]


HANDSHAPES: dict[str, Handshape] = {
    "A": Handshape(_FIST, _FIST, _FIST, _FIST, 0.0, _T_SIDE),
    "S": Handshape(_FIST, _FIST, _FIST, _FIST, 0.0, _T_ACROSS),
    "B": Handshape(_STRAIGHT, _STRAIGHT, _STRAIGHT, _STRAIGHT, 0.0, _T_ACROSS),
    "5": Handshape(_STRAIGHT, _STRAIGHT, _STRAIGHT, _STRAIGHT, 1.0, _T_OUT),
    "1": Handshape(_STRAIGHT, _FIST, _FIST, _FIST, 0.0, _T_TUCKED),
    "V": Handshape(_STRAIGHT, _STRAIGHT, _FIST, _FIST, 0.8, _T_TUCKED),
    "W": Handshape(_STRAIGHT, _STRAIGHT, _STRAIGHT, _FIST, 0.8, _T_TUCKED),
    "3": Handshape(_STRAIGHT, _STRAIGHT, _FIST, _FIST, 0.8, _T_OUT),
    "Y": Handshape(_FIST, _FIST, _FIST, _STRAIGHT, 0.6, _T_OUT),
    "L": Handshape(_STRAIGHT, _FIST, _FIST, _FIST, 0.0, _T_OUT),
    "I": Handshape(_FIST, _FIST, _FIST, _STRAIGHT, 0.0, _T_TUCKED),
    "C": Handshape(_C, _C, _C, _C, 0.1, _T_CURVED),
    "O": Handshape(_O, _O, _O, _O, 0.0, _T_TOUCH),
    "F": Handshape(_O, _STRAIGHT, _STRAIGHT, _STRAIGHT, 0.6, _T_TOUCH),
    "X": Handshape(_HOOK, _FIST, _FIST, _FIST, 0.0, _T_TUCKED),
    "bent-B": Handshape(_BENT, _BENT, _BENT, _BENT, 0.0, _T_ACROSS),
    "claw-5": Handshape(_CLAW, _CLAW, _CLAW, _CLAW, 1.0, _T_CURVED),
    "flat-O": Handshape(_FLAT_O, _FLAT_O, _FLAT_O, _FLAT_O, 0.0, _T_TOUCH),
}
# Manual-alphabet letters, mapped onto the handshape inventory (approximate where the alphabet has more shapes).
LETTER_HANDSHAPE = {
    "A": "A", "B": "B", "C": "C", "D": "1", "E": "claw-5", "F": "F", "G": "L", "H": "V", "I": "I", "J": "I",
    "K": "V", "L": "L", "M": "S", "N": "S", "O": "O", "P": "V", "Q": "L", "R": "V", "S": "S", "T": "A",
    "U": "V", "V": "V", "W": "W", "X": "X", "Y": "Y", "Z": "1",
}  # fmt: skip
# Handshape changes that occur in real signs (opening, closing, flicking).
HANDSHAPE_CHANGES = {"S": "5", "5": "S", "O": "5", "flat-O": "5", "1": "X", "X": "1", "A": "L", "C": "S"}

# --- locations: anchor joint and the palm centre's offset (ipsilateral x, up y, forward z), reference body ----
LOCATIONS: dict[str, tuple[str, tuple[float, float, float]]] = {
    "forehead": ("head", (0.0, 0.075, 0.15)),
    "eyes": ("head", (0.02, 0.03, 0.155)),
    "nose": ("head", (0.0, 0.0, 0.165)),
    "mouth": ("head", (0.0, -0.035, 0.155)),
    "chin": ("head", (0.0, -0.08, 0.14)),
    "cheek": ("head", (0.085, -0.01, 0.11)),
    "temple": ("head", (0.105, 0.05, 0.05)),
    "chest": ("spine3", (0.0, 0.05, 0.17)),
    "shoulder_contra": ("spine3", (-0.16, 0.14, 0.12)),
    "stomach": ("spine3", (0.0, -0.22, 0.18)),
    "neutral": ("spine3", (0.1, -0.05, 0.34)),
    "neutral_high": ("spine3", (0.12, 0.2, 0.33)),
    "side": ("spine3", (0.3, -0.02, 0.22)),
    "base_hand": ("spine3", (0.0, -0.08, 0.34)),  # above the non-dominant palm (two_base signs only)
}
FREE_LOCATIONS = tuple(k for k in LOCATIONS if k != "base_hand")

# --- palm orientation: (palm normal, finger direction) in (ipsilateral, up, forward) axes -----------------------
ORIENTATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "palm_out_up": ((0, 0, 1), (0, 1, 0)),
    "palm_in_up": ((0, 0, -1), (0, 1, 0)),
    "palm_down_fwd": ((0, -1, 0), (0, 0, 1)),
    "palm_up_fwd": ((0, 1, 0), (0, 0, 1)),
    "palm_contra_up": ((-1, 0, 0), (0, 1, 0)),
    "palm_down_contra": ((0, -1, 0), (-1, 0, 0)),
    "palm_in_contra": ((0, 0, -1), (-1, 0, 0)),
    "palm_contra_fwd": ((-1, 0, 0), (0, 0, 1)),
}

# --- movement paths, repetition, hands, non-manual markers -----------------------------------------------------
MOVEMENTS = (
    "hold", "straight_fwd", "straight_down", "straight_up", "straight_contra", "arc", "circle",
    "circle_horizontal", "zigzag", "tap", "twist", "wiggle",
)  # fmt: skip
FINGERSPELL = "fingerspell"  # only for fingerspelled glosses; its handshapes come from the letters
REPETITIONS = (1, 2, 3)
HANDS = ("one", "two_sym", "two_alt", "two_base")
NON_MANUALS = ("none", "brow_raise", "brow_furrow", "head_shake", "head_nod", "mouth_open")

PARAM_FIELDS = ("handshape", "handshape_end", "location", "movement", "repetition", "orientation", "hands", "nmm")


@dataclass(frozen=True)
class Sign:
    """One lexical sign: its ID gloss and its phonological parameters."""

    gloss: str
    handshape: str
    handshape_end: str | None  # handshape change within the sign (None: no change)
    location: str
    movement: str
    repetition: int
    orientation: str
    hands: str
    nmm: str
    letters: tuple[str, ...] = ()  # fingerspelled signs: the letter handshapes in order

    def params(self) -> tuple:
        return tuple(getattr(self, f) for f in PARAM_FIELDS) + (self.letters,)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["letters"] = list(self.letters)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Sign:
        d = dict(d)
        d["letters"] = tuple(d.get("letters", ()))
        return cls(**{f.name: d[f.name] for f in fields(cls)})


def differing_params(a: Sign, b: Sign) -> list[str]:
    """Names of the phonological parameters in which two signs differ."""
    diff = [f for f in PARAM_FIELDS if getattr(a, f) != getattr(b, f)]
    return diff + (["letters"] if a.letters != b.letters else [])


def is_fingerspelled(gloss: str) -> bool:
    return gloss.startswith("#") or gloss.startswith("fs-") or gloss.startswith("ns-fs-")


def _letters(gloss: str) -> tuple[str, ...]:
    word = gloss.split("fs-")[-1].lstrip("#")
    return tuple(LETTER_HANDSHAPE[c] for c in word.upper() if c in LETTER_HANDSHAPE)[:6]


def _valid(hands: str, location: str) -> bool:
    return (hands == "two_base") == (location == "base_hand")


def _random_sign(gloss: str, rng: np.random.Generator) -> Sign:
    hands = HANDS[rng.choice(len(HANDS), p=[0.55, 0.2, 0.1, 0.15])]
    location = "base_hand" if hands == "two_base" else FREE_LOCATIONS[rng.integers(len(FREE_LOCATIONS))]
    handshape = list(HANDSHAPES)[rng.integers(len(HANDSHAPES))]
    change = rng.random() < 0.15 and handshape in HANDSHAPE_CHANGES
    return Sign(
        gloss=gloss,
        handshape=handshape,
        handshape_end=HANDSHAPE_CHANGES[handshape] if change else None,
        location=location,
        movement=MOVEMENTS[rng.integers(len(MOVEMENTS))],
        repetition=int(REPETITIONS[rng.choice(3, p=[0.5, 0.35, 0.15])]),
        orientation=list(ORIENTATIONS)[rng.integers(len(ORIENTATIONS))],
        hands=hands,
        nmm=NON_MANUALS[rng.choice(len(NON_MANUALS), p=[0.75, 0.05, 0.05, 0.05, 0.05, 0.05])],
    )


def _alternatives(sign: Sign, field: str) -> list:
    """Values `field` can take in a minimal-pair partner of `sign` (other value, still a well-formed sign)."""
    current = getattr(sign, field)
    if field == "handshape":
        options = list(HANDSHAPES)
    elif field == "handshape_end":
        options = [None, *HANDSHAPES]
        options = [o for o in options if o != sign.handshape]
    elif field == "location":
        options = [loc for loc in LOCATIONS if _valid(sign.hands, loc)]
    elif field == "movement":
        options = list(MOVEMENTS)
    elif field == "repetition":
        options = list(REPETITIONS)
    elif field == "orientation":
        options = list(ORIENTATIONS)
    elif field == "hands":
        options = [h for h in HANDS if _valid(h, sign.location)]
    else:
        options = list(NON_MANUALS)
    return [o for o in options if o != current]


def _fingerspelled_sign(gloss: str, taken: set[tuple]) -> Sign | None:
    """The gloss spelled with letter handshapes, high in neutral space (or lower, if an earlier name has the same
    letter shapes); None if both forms are taken."""
    letters = _letters(gloss) or ("A",)
    for location in ("neutral_high", "neutral"):
        sign = Sign(gloss, letters[0], None, location, FINGERSPELL, 1, "palm_out_up", "one", "none", letters)
        if sign.params() not in taken:
            return sign
    return None


@dataclass(frozen=True)
class Lexicon:
    signs: tuple[Sign, ...]
    minimal_pairs: tuple[tuple[str, str, str], ...]  # (gloss a, gloss b, the one parameter they differ in)

    @property
    def glosses(self) -> list[str]:
        return [s.gloss for s in self.signs]

    def by_gloss(self) -> dict[str, Sign]:
        return {s.gloss: s for s in self.signs}

    def to_dict(self) -> dict:
        return {
            "signs": [s.to_dict() for s in self.signs],
            "minimal_pairs": [list(p) for p in self.minimal_pairs],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Lexicon:
        return cls(tuple(Sign.from_dict(s) for s in d["signs"]), tuple(tuple(p) for p in d["minimal_pairs"]))


def make_lexicon(n_glosses: int, minimal_pair_fraction: float, rng: np.random.Generator) -> Lexicon:
    """A lexicon of `n_glosses` distinct signs, `minimal_pair_fraction` of them members of minimal pairs.

    A partner copies an earlier (not yet paired) sign and changes exactly one parameter to another
    well-formed value; every sign's parameter bundle is unique, so no two glosses look alike by design.
    """
    names = gloss_names(n_glosses, rng)
    n_pairs_target = int(round(n_glosses * minimal_pair_fraction / 2))
    signs: list[Sign] = []
    seen: set[tuple] = set()
    unpaired: list[Sign] = []
    pairs: list[tuple[str, str, str]] = []
    for gloss in names:
        sign = _fingerspelled_sign(gloss, seen) if is_fingerspelled(gloss) else None
        if sign is None:
            if len(pairs) < n_pairs_target and unpaired:
                base = unpaired.pop(int(rng.integers(len(unpaired))))
                for _ in range(50):
                    field = PARAM_FIELDS[rng.integers(len(PARAM_FIELDS))]
                    options = _alternatives(base, field)
                    if not options:
                        continue
                    value = options[rng.integers(len(options))]
                    cand = Sign(**{**base.to_dict(), "letters": (), "gloss": gloss, field: value})
                    if cand.params() not in seen:
                        sign = cand
                        pairs.append((base.gloss, gloss, field))
                        break
            while sign is None or sign.params() in seen:
                sign = _random_sign(gloss, rng)
            if not pairs or pairs[-1][1] != gloss:
                unpaired.append(sign)
        seen.add(sign.params())
        signs.append(sign)
    return Lexicon(tuple(signs), tuple(pairs))
