"""Built-in synthetic scenes: 1-3 coloured shapes placed with spatial relations.

Every scene is drawn from a random generator seeded by ``(seed, split, index)``, so a
dataset is deterministic by seed and can be rendered in any order. Each scene has five
reference captions in varied wording and its ground truth (objects and relations), which
:func:`caption_matches_scene` checks a generated caption against.
"""

from __future__ import annotations

import colorsys
import math
import random
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

from captioner.vocab import tokenize

COLOURS = {
    "red": (215, 35, 35),
    "green": (40, 175, 55),
    "blue": (45, 85, 235),
    "yellow": (240, 220, 40),
    "purple": (150, 55, 205),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
SIZES = {"small": 0.12, "large": 0.18}  # half-extent as a fraction of the image side
RELATIONS = ("left", "right", "above", "below")
INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}
DIRECTION = {"left": (-1, 0), "right": (1, 0), "above": (0, -1), "below": (0, 1)}

# Colour-shape combinations never drawn in train/val: the test split uses them to measure
# whether the model composes colour and shape or memorises pairs.
NOVEL_COMBOS = frozenset({("red", "triangle"), ("blue", "star"), ("green", "circle"), ("yellow", "cross")})

# Wording: the first word of each list is the canonical one; the others are synonyms.
COLOUR_WORDS = {c: [c] for c in COLOURS} | {"purple": ["purple", "violet"]}
SHAPE_WORDS = {s: [s] for s in SHAPES} | {"circle": ["circle", "disc"], "square": ["square", "box"]}
SIZE_WORDS = {"small": ["small", "little", "tiny"], "large": ["large", "big"]}
REVERSED_ORDER = 0.2  # share of references that name the objects right-to-left / bottom-to-top
RELATION_PHRASES = {
    "left": ["to the left of", "left of", "on the left of"],
    "right": ["to the right of", "right of", "on the right of"],
    "above": ["above", "over"],
    "below": ["below", "under", "beneath"],
}


@dataclass(frozen=True)
class SceneObject:
    colour: str
    shape: str
    size: str
    x: float  # centre, as a fraction of the image width
    y: float  # centre, as a fraction of the image height


@dataclass(frozen=True)
class Scene:
    """Objects plus relations ``(subject, relation, anchor)`` between object indices."""

    objects: tuple[SceneObject, ...]
    relations: tuple[tuple[int, str, int], ...]

    def to_json(self) -> dict:
        return {"objects": [asdict(o) for o in self.objects], "relations": [list(r) for r in self.relations]}

    @classmethod
    def from_json(cls, data: dict) -> Scene:
        objects = tuple(SceneObject(**o) for o in data["objects"])
        return cls(objects, tuple((int(s), str(r), int(a)) for s, r, a in data["relations"]))


def all_combos() -> list[tuple[str, str]]:
    return [(c, s) for c in COLOURS for s in SHAPES]


def sample_scene(rng: random.Random, novel: bool = False) -> Scene:
    """A scene of 1-3 objects with distinct colour-shape pairs.

    ``novel=False`` draws only combinations seen in training; ``novel=True`` makes the
    first object a held-out combination.
    """
    count = rng.choices((1, 2, 3), weights=(0.2, 0.4, 0.4))[0]
    seen = [c for c in all_combos() if c not in NOVEL_COMBOS]
    combos = rng.sample(seen, count)
    if novel:
        combos[0] = rng.choice(sorted(NOVEL_COMBOS))
        if len(set(combos)) < count:
            combos = [combos[0]] + rng.sample([c for c in seen if c != combos[0]], count - 1)
    sizes = [rng.choice(tuple(SIZES)) for _ in combos]
    while True:  # rejection sampling of a layout that fits the canvas
        layout = _sample_layout(rng, [SIZES[s] for s in sizes])
        if layout is not None:
            break
    positions, relations = layout
    objects = tuple(
        SceneObject(colour, shape, size, round(x, 4), round(y, 4))
        for (colour, shape), size, (x, y) in zip(combos, sizes, positions)
    )
    return Scene(objects, relations)


def _sample_layout(rng: random.Random, radii: list[float]):
    """Object 1 is the anchor; objects 0 and 2 sit on different sides of it."""
    if len(radii) == 1:
        r = radii[0]
        return [(rng.uniform(r, 1 - r), rng.uniform(r, 1 - r))], ()
    anchor_r = radii[1]
    anchor = (rng.uniform(anchor_r, 1 - anchor_r), rng.uniform(anchor_r, 1 - anchor_r))
    positions = {1: anchor}
    relations = []
    for index, relation in zip((0, 2), rng.sample(RELATIONS, 2)):
        if index >= len(radii):
            break
        r = radii[index]
        distance = anchor_r + r + rng.uniform(0.03, 0.12)
        dx, dy = DIRECTION[relation]
        sideways = rng.uniform(-0.3, 0.3) * distance  # small enough that the relation is unambiguous
        x = anchor[0] + dx * distance + dy * sideways
        y = anchor[1] + dy * distance + dx * sideways
        if not (r <= x <= 1 - r and r <= y <= 1 - r):
            return None
        positions[index] = (x, y)
        relations.append((index, relation, 1))
    if len(radii) == 3 and math.dist(positions[0], positions[2]) < radii[0] + radii[2] + 0.03:
        return None
    return [positions[i] for i in range(len(radii))], tuple(relations)


def render_scene(scene: Scene, image_size: int, rng: random.Random) -> Image.Image:
    """Draw the scene on a muted gradient background with a little noise."""
    scale = 4  # draw large and downsample: antialiased edges
    side = image_size * scale
    canvas = Image.fromarray(_background(rng, side))
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        colour = tuple(min(255, max(0, c + rng.randint(-20, 20))) for c in COLOURS[obj.colour])
        _draw_shape(draw, obj.shape, obj.x * side, obj.y * side, SIZES[obj.size] * side, colour)
    image = canvas.resize((image_size, image_size), Image.Resampling.BOX)
    pixels = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0.0, 5.0, pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def _background(rng: random.Random, side: int) -> np.ndarray:
    hue = rng.random()
    top = colorsys.hsv_to_rgb(hue, rng.uniform(0.0, 0.35), rng.uniform(0.2, 0.5))
    bottom = colorsys.hsv_to_rgb((hue + rng.uniform(-0.08, 0.08)) % 1, rng.uniform(0.0, 0.35), rng.uniform(0.2, 0.5))
    weights = np.linspace(0.0, 1.0, side, dtype=np.float32)[:, None, None]  # (side, 1, 1)
    gradient = (1 - weights) * np.array(top) + weights * np.array(bottom)  # (side, 1, 3)
    return (np.broadcast_to(gradient, (side, side, 3)) * 255).astype(np.uint8)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=fill)
    elif shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.42
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        draw.polygon(points, fill=fill)
    elif shape == "cross":
        w = r * 0.33
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def describe_scene(scene: Scene, rng: random.Random, count: int = 5) -> list[str]:
    """``count`` distinct reference captions in varied wording and word order."""
    captions: list[str] = []
    for _ in range(50 * count):
        caption = _describe_once(scene, rng)
        if caption not in captions:
            captions.append(caption)
        if len(captions) == count:
            break
    while len(captions) < count:  # a one-object scene has few wordings: repeat some
        captions.append(captions[len(captions) % len(captions)])
    return captions


def _describe_once(scene: Scene, rng: random.Random) -> str:
    objects = scene.objects
    if len(objects) == 1:
        phrase = _object_phrase(objects[0], rng)
        return rng.choice(("{}", "there is {}", "a picture of {}", "{} on its own")).format(phrase)
    if len(objects) == 2:
        caption = _pair_phrase(scene, rng)
    else:
        caption = _anchor_phrase(scene, rng)
    return f"there is {caption}" if rng.random() < 0.25 else caption


def _pair_phrase(scene: Scene, rng: random.Random) -> str:
    """"A rel B", usually told left to right / top to bottom."""
    (subject, relation, anchor), = scene.relations
    first, second = scene.objects[subject], scene.objects[anchor]
    if relation in ("right", "below"):
        first, second, relation = second, first, INVERSE[relation]
    if rng.random() < REVERSED_ORDER:  # sometimes the other way round
        first, second, relation = second, first, INVERSE[relation]
    return f"{_object_phrase(first, rng)} {rng.choice(RELATION_PHRASES[relation])} {_object_phrase(second, rng)}"


def _anchor_phrase(scene: Scene, rng: random.Random) -> str:
    """"ANCHOR with A rel it and C rel it": the object both others relate to is named first and
    once. (Measured: with "A rel B and the B rel C", the decoder garbled the repeated anchor.)"""
    anchor = scene.objects[scene.relations[0][2]]
    clauses = [f"{_object_phrase(scene.objects[subject], rng)} {rng.choice(RELATION_PHRASES[relation])} it"
               for subject, relation, _ in sorted(scene.relations, key=lambda r: RELATIONS.index(r[1]))]
    if rng.random() < REVERSED_ORDER:
        clauses.reverse()
    return f"{_object_phrase(anchor, rng)} with {' and '.join(clauses)}"


def _object_phrase(obj: SceneObject, rng: random.Random, definite: bool = False) -> str:
    words = ["the" if definite else "a"]
    if rng.random() < 0.6:
        words.append(rng.choice(SIZE_WORDS[obj.size]))
    words.append(rng.choice(COLOUR_WORDS[obj.colour]))
    words.append(rng.choice(SHAPE_WORDS[obj.shape]))
    return " ".join(words)


# --- reading captions back -------------------------------------------------------------

_COLOUR_OF = {w: c for c, words in COLOUR_WORDS.items() for w in words}
_SHAPE_OF = {w: s for s, words in SHAPE_WORDS.items() for w in words}
_RELATION_PHRASES = sorted(
    ((tuple(p.split()), r) for r, phrases in RELATION_PHRASES.items() for p in phrases),
    key=lambda item: -len(item[0]),  # longest first: "to the left of" before "left of"
)


def parse_caption(caption: str) -> tuple[set[tuple[str, str]], set[tuple]]:
    """The objects ``(colour, shape)`` a caption names and its relations.

    Relations come from every "object relation object" run of the caption, normalised to
    ``left``/``above`` so that "A right of B" equals "B left of A"; "it" is the first object named.
    """
    tokens = tokenize(caption)
    items: list[tuple] = []
    i = 0
    while i < len(tokens):
        if tokens[i] in _COLOUR_OF and i + 1 < len(tokens) and tokens[i + 1] in _SHAPE_OF:
            items.append(("object", (_COLOUR_OF[tokens[i]], _SHAPE_OF[tokens[i + 1]])))
            i += 2
            continue
        if tokens[i] == "it" and items and items[0][0] == "object":
            items.append(items[0])
            i += 1
            continue
        for phrase, relation in _RELATION_PHRASES:
            if tuple(tokens[i : i + len(phrase)]) == phrase:
                items.append(("relation", relation))
                i += len(phrase)
                break
        else:
            i += 1
    objects = {value for kind, value in items if kind == "object"}
    relations = set()
    for (k1, a), (k2, relation), (k3, b) in zip(items, items[1:], items[2:]):
        if (k1, k2, k3) == ("object", "relation", "object"):
            relations.add(_normalise(a, relation, b))
    return objects, relations


def _normalise(subject, relation: str, anchor) -> tuple:
    if relation in ("right", "below"):
        return (anchor, INVERSE[relation], subject)
    return (subject, relation, anchor)


def scene_truth(scene: Scene) -> tuple[set[tuple[str, str]], set[tuple]]:
    """The same ``(objects, relations)`` as :func:`parse_caption`, from the ground truth."""
    names = [(o.colour, o.shape) for o in scene.objects]
    return set(names), {_normalise(names[s], r, names[a]) for s, r, a in scene.relations}


def caption_matches_scene(caption: str, scene: Scene) -> bool:
    """True when the caption names every object (colour and shape) and every relation right."""
    return parse_caption(caption) == scene_truth(scene)


def scene_has_novel_combo(scene: Scene) -> bool:
    return any((o.colour, o.shape) in NOVEL_COMBOS for o in scene.objects)
