"""The built-in data set: procedurally drawn motion-camera frames, person vs. no person.

Every frame is drawn from its own seed (data seed, split, index), so a sample never depends
on how many others are drawn or in which order, and the same config gives the same bytes.
Both classes share every distractor (animals, birds, poles, shadows, moving vegetation,
lighting changes, noise, blur); only the person differs (unless `trigger_p` > 0). Varied pose,
view, scale and clothing, occlusion, blur, night mode and person-like distractors keep it from
being trivial. The parameters are `Recipe`'s fields, documented in
datasets/synthetic-motion.yaml (a test keeps the two equal).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from edge.training.raster import (
    LUMA,
    Layer,
    bar,
    box,
    box_blur,
    coverage,
    ellipse,
    grid,
    motion_blur,
    paint,
    to_channels,
    union,
    value_noise,
)

LABELS = ("no_person", "person")
SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
_DOMAIN = 0x6D6F74  # keeps these seeds apart from any other use of the data seed


@dataclass(frozen=True)
class Recipe:
    """What the generator draws and how often (probabilities per frame, ranges as (low, high))."""

    person_height: tuple[float, float] = (0.5, 0.9)
    small_person_p: float = 0.0
    small_person_height: tuple[float, float] = (0.16, 0.28)
    person_contrast: tuple[float, float] = (0.3, 0.6)
    second_person_p: float = 0.1
    crouch_p: float = 0.15
    occlusion_p: float = 0.1
    occlusion_fraction: tuple[float, float] = (0.15, 0.4)
    quadruped_p: float = 0.25
    bird_p: float = 0.15
    upright_distractor_p: float = 0.1
    clutter_count: tuple[int, int] = (0, 1)
    shadow_p: float = 0.35
    figure_shadow_p: float = 0.05
    trigger_p: float = 0.0
    vegetation_p: float = 0.2
    indoor_p: float = 0.3
    lighting_p: float = 0.5
    night_p: float = 0.05
    object_motion_blur_p: float = 0.15
    motion_blur_length: tuple[float, float] = (0.01, 0.05)
    camera_shake_p: float = 0.1
    defocus_p: float = 0.15
    noise_sigma: tuple[float, float] = (0.003, 0.015)
    night_noise_sigma: tuple[float, float] = (0.02, 0.05)


DEFAULT_RECIPE = Recipe()


def recipe_dict(recipe: Recipe = DEFAULT_RECIPE) -> dict[str, float | list[float]]:
    """The recipe as plain data (tuples as lists), e.g. to compare with the YAML recipe."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(recipe).items()}


class Scene:
    """One frame being drawn: its random stream, canvas and ground geometry."""

    def __init__(self, rng: np.random.Generator, size: int, channels: int, recipe: Recipe) -> None:
        self.rng = rng
        self.size = size
        self.channels = channels
        self.recipe = recipe
        self.image = np.zeros((size, size, channels), dtype=np.float32)
        self.horizon = float(rng.uniform(0.2, 0.6))
        self.indoor = bool(rng.random() < recipe.indoor_p)

    def chance(self, p: float) -> bool:
        """True with probability p (always consumes one draw, keeping streams aligned)."""
        return bool(self.rng.random() < p)

    def uniform(self, bounds: tuple[float, float]) -> float:
        """A draw from [low, high)."""
        return float(self.rng.uniform(*bounds))

    def colour(self, lo: float, hi: float, tint: float = 0.15) -> np.ndarray:
        """A colour of brightness in [lo, hi] with a random hue tint, in this scene's channels."""
        level = self.rng.uniform(lo, hi)
        rgb = np.clip(level + self.rng.uniform(-tint, tint, size=3), 0.0, 1.0)
        return to_channels(rgb, self.channels)

    def colour_against(self, x: float, y: float, contrast: float) -> np.ndarray:
        """A colour whose luma differs from the local background around (x, y) by about `contrast`."""
        px = int(np.clip(x, 0, 0.999) * self.size)
        py = int(np.clip(y, 0, 0.999) * self.size)
        r = max(2, self.size // 16)
        patch = self.image[max(0, py - r): py + r + 1, max(0, px - r): px + r + 1]
        local = float(patch.mean())
        sign = 1.0 if (local < 0.25 or (local < 0.75 and self.rng.random() < 0.5)) else -1.0
        level = np.clip(local + sign * contrast, 0.02, 0.98)
        tint = self.rng.uniform(-0.12, 0.12, size=3)
        rgb = np.clip(level + tint - float(tint @ LUMA), 0.0, 1.0)
        return to_channels(rgb, self.channels)

    def ground_y(self, height: float) -> float:
        """Where the feet of an object `height` tall stand, roughly in perspective."""
        return self.horizon + height * self.uniform((0.6, 1.4))


def render(split: str, index: int, size: int = 64, channels: int = 1, seed: int = 0,
           recipe: Recipe = DEFAULT_RECIPE) -> tuple[np.ndarray, int]:
    """Draw frame `index` of `split`: (uint8 [size, size, channels], label). Even indices: no person."""
    label = index % 2
    seq = np.random.SeedSequence([_DOMAIN, seed % 2**32, SPLIT_CODES[split], index])
    scene = Scene(np.random.default_rng(seq), size, channels, recipe)
    _background(scene)
    for _ in range(int(scene.rng.integers(recipe.clutter_count[0], recipe.clutter_count[1] + 1))):
        _clutter(scene)
    if scene.chance(recipe.shadow_p):
        _ground_shadow(scene)
    if scene.chance(recipe.figure_shadow_p):
        _figure_shadow(scene)
    if scene.chance(recipe.upright_distractor_p):
        _upright_distractor(scene)
    if scene.chance(recipe.quadruped_p):
        _quadruped(scene)
    if label:
        _person(scene)
        if scene.chance(recipe.second_person_p):
            _person(scene)
    elif scene.chance(recipe.trigger_p):  # what set the camera off instead, as salient as a person
        (_quadruped if scene.chance(0.7) else _upright_distractor)(scene, salient=True)
    if scene.chance(recipe.bird_p):
        _bird(scene)
    if scene.chance(recipe.vegetation_p):
        _vegetation(scene)
    _camera(scene)
    return scene.image, label


def generate(split: str, n: int, size: int = 64, channels: int = 1, seed: int = 0,
             recipe: Recipe = DEFAULT_RECIPE, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Frames 0..n-1 of `split`: x uint8 [n, size, size, channels], y int64 [n] (balanced)."""
    x = np.empty((n, size, size, channels), dtype=np.uint8)
    y = np.empty(n, dtype=np.int64)
    for i in tqdm(range(n), desc=f"synthetic {split}", unit="img", disable=not progress, leave=False):
        x[i], y[i] = render(split, i, size, channels, seed, recipe)
    return x, y


# --- background and static clutter -------------------------------------------------------------

def _background(sc: Scene) -> None:
    yy, xx = grid(sc.size)
    tilt = sc.uniform((-0.08, 0.08))
    ground = coverage(sc.horizon + tilt * (xx - 0.5) - yy, sc.size, soft=1.5)
    if sc.indoor:
        upper, lower = sc.colour(0.35, 0.85, 0.1), sc.colour(0.15, 0.6, 0.1)
    else:
        upper, lower = sc.colour(0.5, 0.95, 0.12), sc.colour(0.15, 0.65, 0.2)
    sc.image[:] = upper
    paint(sc.image, ground, lower)
    sc.image *= (1.0 + sc.uniform((-0.35, 0.35)) * (yy - 0.5))[..., None]
    sc.image += (sc.uniform((0.02, 0.1)) * value_noise(sc.rng, sc.size, 4))[..., None]
    sc.image += (sc.uniform((0.0, 0.06)) * value_noise(sc.rng, sc.size, max(4, sc.size // 4)))[..., None]
    if not sc.indoor:  # grass / gravel streaks on the ground
        streaks = value_noise(sc.rng, sc.size, max(8, sc.size // 2), 6)
        sc.image += (sc.uniform((0.0, 0.1)) * streaks * ground)[..., None]
    elif sc.chance(0.3):  # a window on the wall (wider than tall, so it does not mimic a standing figure)
        x0 = sc.uniform((0.0, 0.7))
        top = sc.uniform((0.05, max(0.06, sc.horizon - 0.2)))
        width = max(sc.uniform((0.2, 0.4)), (sc.horizon - top) * 1.2)
        paint(sc.image, box(sc.size, x0, top, x0 + width, sc.horizon - 0.02), sc.colour(0.1, 1.0))


def _clutter(sc: Scene) -> None:
    kind = sc.rng.integers(4)
    h = sc.uniform((0.08, 0.6))
    x = sc.uniform((-0.05, 1.05))
    fy = sc.ground_y(h)
    col = sc.colour(0.1, 0.8)
    if kind == 0:  # tree: trunk + canopy of blobs
        trunk = bar(sc.size, (x, fy), (x, fy - h * 0.6), h * sc.uniform((0.03, 0.08)), 0.0)
        paint(sc.image, trunk, sc.colour(0.1, 0.5))
        blobs = [ellipse(sc.size, (x + sc.uniform((-0.2, 0.2)) * h, fy - h * sc.uniform((0.6, 0.95))),
                         h * sc.uniform((0.12, 0.3)), h * sc.uniform((0.12, 0.3))) for _ in range(4)]
        shade = 1.0 + 0.25 * value_noise(sc.rng, sc.size, max(4, sc.size // 6))
        layer = Layer(sc.size, sc.channels)
        layer.draw(union(*blobs), col, shade)
        layer.over(sc.image)
    elif kind == 1:  # rock or low bush
        paint(sc.image, ellipse(sc.size, (x, fy - h * 0.15), h * sc.uniform((0.2, 0.5)), h * 0.18), col)
    elif kind == 2:  # fence: posts and rails
        top = fy - h * 0.4
        for post in np.arange(x - 0.3, x + 0.3, sc.uniform((0.06, 0.15))):
            paint(sc.image, bar(sc.size, (post, fy), (post, top), 0.008 + h * 0.02, 0.0), col)
        paint(sc.image, box(sc.size, x - 0.35, top + 0.02, x + 0.35, top + 0.02 + h * 0.04), col)
    else:  # box, furniture or car body
        w = h * sc.uniform((0.9, 2.0))
        paint(sc.image, box(sc.size, x - w / 2, fy - h * 0.45, x + w / 2, fy), col)


def _ground_shadow(sc: Scene) -> None:
    """A soft dark patch: a cloud, a tree or a building edge."""
    yy, xx = grid(sc.size)
    if sc.chance(0.5):
        edge = sc.uniform((-0.2, 1.2)) + sc.uniform((-0.8, 0.8)) * (yy - 0.5)
        alpha = coverage(xx - edge, sc.size, soft=sc.uniform((1.0, 6.0))) if sc.chance(0.5) else \
            coverage(edge - xx, sc.size, soft=sc.uniform((1.0, 6.0)))
    else:
        alpha = ellipse(sc.size, (sc.uniform((0, 1)), sc.uniform((sc.horizon, 1.0))),
                        sc.uniform((0.1, 0.5)), sc.uniform((0.04, 0.2)), sc.uniform((-0.3, 0.3)),
                        soft=sc.uniform((1.0, 5.0)))
    sc.image *= (1.0 - sc.uniform((0.15, 0.5)) * alpha)[..., None]


def _figure_shadow(sc: Scene) -> None:
    """The long cast shadow of someone outside the frame, stretched flat along the ground."""
    x, y = sc.uniform((0.1, 0.9)), sc.uniform((max(sc.horizon, 0.5), 1.0))
    length = sc.uniform((0.2, 0.5))
    angle = sc.uniform((-0.6, 0.6)) + (0 if sc.chance(0.5) else np.pi)
    tip = (x + length * np.cos(angle), y - 0.15 * length * abs(np.sin(angle)) - 0.03)
    legs = bar(sc.size, (x, y), tip, 0.02 + length * 0.06)
    head = ellipse(sc.size, tip, 0.025 + length * 0.05, 0.015 + length * 0.03, angle)
    alpha = box_blur(union(legs, head)[..., None], max(1, sc.size // 40))[..., 0]
    sc.image *= (1.0 - sc.uniform((0.2, 0.45)) * alpha)[..., None]


def _upright_distractor(sc: Scene, salient: bool = False) -> None:
    """Tall thin things that look a little like a person: posts with round signs, bollards, herons."""
    kind = sc.rng.integers(3)
    h = sc.uniform((0.4, 0.8) if salient else (0.15, 0.7))
    x = sc.uniform((0.05, 0.95))
    fy = min(sc.ground_y(h), 1.0 + h * 0.3)
    if fy - h < 0.02:
        fy = h + 0.02
    col = sc.colour_against(x, fy - h / 2, sc.uniform(sc.recipe.person_contrast)) if salient else sc.colour(0.05, 0.9)
    if kind == 0:  # post with a round or square sign on top
        paint(sc.image, bar(sc.size, (x, fy), (x, fy - h * 0.8), h * sc.uniform((0.02, 0.05)), 0.0), col)
        sign = ellipse(sc.size, (x, fy - h * 0.85), h * 0.12, h * 0.12) if sc.chance(0.5) else \
            box(sc.size, x - h * 0.12, fy - h, x + h * 0.12, fy - h * 0.75)
        paint(sc.image, sign, sc.colour(0.05, 0.95, 0.3))
    elif kind == 1:  # bollard, bin or hydrant
        w = h * sc.uniform((0.12, 0.3))
        paint(sc.image, bar(sc.size, (x, fy - w), (x, fy - h + w), w, w * 0.5), col)
    else:  # heron-like standing bird: long legs, body, neck, small head
        leg_top = fy - h * 0.45
        paint(sc.image, union(bar(sc.size, (x - h * 0.03, fy), (x, leg_top), h * 0.012 + 0.004),
                              bar(sc.size, (x + h * 0.03, fy), (x, leg_top), h * 0.012 + 0.004)), col)
        body = ellipse(sc.size, (x, leg_top - h * 0.08), h * 0.16, h * 0.09, sc.uniform((-0.5, 0.1)))
        neck = bar(sc.size, (x + h * 0.1, leg_top - h * 0.1), (x + h * 0.08, fy - h * 0.95), h * 0.025)
        head = ellipse(sc.size, (x + h * 0.1, fy - h * 0.95), h * 0.045, h * 0.035)
        paint(sc.image, union(body, neck, head), col)


# --- animals -----------------------------------------------------------------------------------

def _quadruped(sc: Scene, salient: bool = False) -> None:
    """A dog, deer, fox or cow: body, four walking legs, neck and head, tail; maybe blurred."""
    length = sc.uniform((0.25, 0.6) if salient else (0.08, 0.55))
    height = length * sc.uniform((0.7, 1.3))
    x = sc.uniform((-0.1, 1.1))
    fy = min(sc.ground_y(height), 1.0 + height * 0.2)
    face = 1.0 if sc.chance(0.5) else -1.0
    phase = sc.uniform((0.0, 2 * np.pi))
    leg_len = height * sc.uniform((0.35, 0.55))
    body_y = fy - leg_len - height * 0.12
    body = ellipse(sc.size, (x, body_y), length * 0.45, height * sc.uniform((0.14, 0.24)))
    parts = [body]
    for i, hip_dx in enumerate((-0.32, -0.22, 0.22, 0.32)):
        swing = 0.35 * np.sin(phase + i * np.pi / 2)
        hip = (x + hip_dx * length * face, body_y + height * 0.08)
        foot = (hip[0] + np.sin(swing) * leg_len, hip[1] + np.cos(swing) * leg_len)
        parts.append(bar(sc.size, hip, foot, 0.004 + length * 0.025))
    neck_top = (x + face * length * 0.55, body_y - height * sc.uniform((0.05, 0.3)))
    parts.append(bar(sc.size, (x + face * length * 0.35, body_y), neck_top, length * 0.07))
    parts.append(ellipse(sc.size, (neck_top[0] + face * length * 0.06, neck_top[1]), length * 0.11, length * 0.07))
    tail_end = (x - face * length * 0.7, body_y + sc.uniform((-0.1, 0.2)) * height)
    parts.append(bar(sc.size, (x - face * length * 0.42, body_y), tail_end, 0.003 + length * 0.02))
    layer = Layer(sc.size, sc.channels)
    colour = sc.colour_against(x, body_y, sc.uniform(sc.recipe.person_contrast)) if salient \
        else sc.colour(0.05, 0.85, 0.2)
    layer.draw(union(*parts), colour)
    if sc.chance(sc.recipe.object_motion_blur_p):
        layer.blur(face * sc.uniform(sc.recipe.motion_blur_length), 0.0, sc.size)
    layer.over(sc.image)


def _bird(sc: Scene) -> None:
    """A bird crossing the frame (wings out, often blurred and close) or sitting on the ground."""
    col = sc.colour(0.05, 0.9, 0.2)
    layer = Layer(sc.size, sc.channels)
    if sc.chance(0.6):
        span = sc.uniform((0.05, 0.6))
        x, y = sc.uniform((0, 1)), sc.uniform((0, 0.9))
        beat = sc.uniform((-0.6, 0.6))
        body = ellipse(sc.size, (x, y), span * 0.18, span * 0.07, sc.uniform((-0.3, 0.3)))
        left = bar(sc.size, (x, y), (x - span * 0.5, y - span * 0.3 * beat), span * 0.05)
        right = bar(sc.size, (x, y), (x + span * 0.5, y - span * 0.3 * beat), span * 0.05)
        layer.draw(union(body, left, right), col)
        layer.blur(sc.uniform((-1, 1)) * sc.uniform(sc.recipe.motion_blur_length) * 2, sc.uniform((-0.02, 0.02)),
                   sc.size)
    else:
        h = sc.uniform((0.04, 0.2))
        x = sc.uniform((0, 1))
        fy = sc.ground_y(h)
        body = ellipse(sc.size, (x, fy - h * 0.45), h * 0.5, h * 0.3, sc.uniform((-0.5, 0.5)))
        head = ellipse(sc.size, (x + h * 0.35, fy - h * 0.8), h * 0.2, h * 0.2)
        layer.draw(union(body, head), col)
    layer.over(sc.image)


def _vegetation(sc: Scene) -> None:
    """Leaves or grass blowing in front of the lens: big, soft, motion-blurred shapes at the edges."""
    layer = Layer(sc.size, sc.channels)
    col = sc.colour(0.05, 0.6, 0.25)
    if sc.chance(0.5):  # a branch hanging in from the top or a side
        x0 = sc.uniform((-0.1, 1.1))
        blobs = [ellipse(sc.size, (x0 + sc.uniform((-0.25, 0.25)), sc.uniform((-0.1, 0.35))),
                         sc.uniform((0.04, 0.15)), sc.uniform((0.02, 0.08)), sc.uniform((-1.5, 1.5)))
                 for _ in range(int(sc.rng.integers(3, 9)))]
        layer.draw(union(*blobs), col, 1.0 + 0.3 * value_noise(sc.rng, sc.size, 8))
    else:  # grass blades along the bottom edge
        blades = []
        for _ in range(int(sc.rng.integers(4, 14))):
            bx = sc.uniform((0, 1))
            blades.append(bar(sc.size, (bx, 1.05), (bx + sc.uniform((-0.1, 0.1)), sc.uniform((0.6, 0.95))),
                              sc.uniform((0.005, 0.02))))
        layer.draw(union(*blades), col)
    layer.blur(sc.uniform((-0.06, 0.06)), sc.uniform((-0.02, 0.02)), sc.size)
    layer.over(sc.image)


# --- people ------------------------------------------------------------------------------------

def _person(sc: Scene) -> None:
    """A walking, standing or crouching person in front or side view, maybe blurred or occluded."""
    r = sc.recipe
    small = sc.chance(r.small_person_p)
    h = sc.uniform(r.small_person_height if small else r.person_height)
    x = sc.uniform((0.08, 0.92))
    fy = min(sc.ground_y(h), 1.0 + 0.25 * h)  # at most the lower quarter below the frame
    if fy - h < 0.02:
        fy = h + 0.02
    contrast = sc.uniform(r.person_contrast)
    shirt = sc.colour_against(x, fy - 0.65 * h, contrast)
    pants = sc.colour_against(x, fy - 0.25 * h, contrast * sc.uniform((0.6, 1.2)))
    skin = to_channels(np.clip(sc.uniform((0.25, 0.9)) + np.array([0.08, 0.0, -0.08]), 0, 1), sc.channels)
    layer = Layer(sc.size, sc.channels)
    for alpha, colour in _body_parts(sc, x, fy, h, shirt, pants, skin):
        layer.draw(alpha, colour)
    if sc.chance(r.object_motion_blur_p):
        layer.blur(sc.uniform((-1, 1)) * sc.uniform(r.motion_blur_length), 0.0, sc.size)
    layer.over(sc.image)
    if sc.chance(r.occlusion_p):
        _occluder(sc, x, fy, h)


def _body_parts(sc: Scene, x: float, fy: float, h: float, shirt: np.ndarray, pants: np.ndarray,
                skin: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(alpha, colour) parts back to front. Local frame: feet at y=0, head top at y=1, x to the right."""
    side = sc.chance(0.5)
    crouch = sc.chance(sc.recipe.crouch_p)
    mirror = 1.0 if sc.chance(0.5) else -1.0
    lean = sc.uniform((-0.12, 0.12)) + (0.35 * mirror if crouch else 0.0)
    phase, stride = sc.uniform((0.0, 2 * np.pi)), sc.uniform((0.0, 0.5)) if side else sc.uniform((0.0, 0.15))
    torso_w = sc.uniform((0.08, 0.11)) if side else sc.uniform((0.11, 0.15))
    limb = sc.uniform((0.035, 0.055))
    hip_y = 0.32 if crouch else 0.5
    c, s = np.cos(lean), np.sin(lean)

    def at(px: float, py: float, pivot: float = hip_y) -> tuple[float, float]:
        """Local (x, y) -> image (x, y); the upper body leans about the hip."""
        if py > pivot:
            px, py = px * c + (py - pivot) * s * mirror, pivot + (py - pivot) * c
        return x + px * mirror * h, fy - py * h

    def limb_bar(p0: tuple[float, float], p1: tuple[float, float], hw: float) -> np.ndarray:
        return bar(sc.size, at(*p0), at(*p1), hw * h + 0.3 / sc.size)

    parts = []
    # legs: thigh and shin per side; knees bend when crouching or striding
    for k, off in enumerate((-1.0, 1.0)):
        swing = stride * np.sin(phase + k * np.pi) if side else 0.0
        hip = (0.0 if side else off * torso_w * 0.5, hip_y)
        if crouch:
            knee = (hip[0] + 0.16, hip_y + 0.02)
            foot = (hip[0] + 0.08, 0.0)
        else:
            knee = (hip[0] + 0.25 * np.sin(swing), hip_y - 0.25 * np.cos(swing))
            bend = max(0.0, -swing) * 0.8
            foot = (knee[0] + 0.25 * np.sin(swing - bend), max(0.0, knee[1] - 0.25 * np.cos(swing - bend)))
            if not side:
                foot = (foot[0] + off * sc.uniform((0.0, 0.06)), foot[1])
        parts.append((union(limb_bar(hip, knee, limb * 1.15), limb_bar(knee, foot, limb)), pants))
    shoulder_y = hip_y + 0.3
    torso = bar(sc.size, at(0.0, hip_y - 0.02), at(0.0, shoulder_y), torso_w * h, 0.3 * torso_w * h)
    neck = limb_bar((0.0, shoulder_y), (0.0, shoulder_y + 0.06), 0.025)
    head_r = sc.uniform((0.07, 0.09))
    head = ellipse(sc.size, at(0.0, shoulder_y + 0.06 + head_r), head_r * h * 0.85, head_r * h)
    arms = []
    raised = sc.chance(0.1)
    for k, off in enumerate((-1.0, 1.0)):
        sx = 0.0 if side else off * (torso_w + 0.01)
        swing = (stride * np.sin(phase + (k + 1) * np.pi)) if side else off * sc.uniform((0.0, 0.25))
        if raised and k == 1:
            swing = np.pi * sc.uniform((0.6, 0.95)) * (1 if side else off)
        elbow = (sx + 0.17 * np.sin(swing), shoulder_y - 0.17 * np.cos(swing))
        hand = (elbow[0] + 0.16 * np.sin(swing + 0.3), elbow[1] - 0.16 * np.cos(swing + 0.3))
        arms.append(union(limb_bar((sx, shoulder_y - 0.02), elbow, limb), limb_bar(elbow, hand, limb * 0.9)))
    parts.append((arms[0], shirt))
    parts.append((union(torso, neck), shirt))
    parts.append((head, skin))
    if sc.chance(0.3):  # hat or hair
        parts.append((ellipse(sc.size, at(0.0, shoulder_y + 0.06 + head_r * 1.6), head_r * h * 0.95,
                              head_r * h * 0.5), sc.colour(0.0, 0.6)))
    parts.append((arms[1], shirt))
    return parts


def _occluder(sc: Scene, x: float, fy: float, h: float) -> None:
    """Something in front of the person: a bush, a wall or car, or a tree trunk at one side."""
    frac = sc.uniform(sc.recipe.occlusion_fraction)
    col = sc.colour(0.05, 0.8)
    kind = sc.rng.integers(3)
    bottom = min(fy, 1.0)
    top = bottom - frac * (bottom - (fy - h))  # hides `frac` of the visible height, from below
    if kind == 0:
        blobs = [ellipse(sc.size, (x + sc.uniform((-0.5, 0.5)) * h, top + sc.uniform((0.05, 0.3)) * h),
                         h * sc.uniform((0.2, 0.45)), h * sc.uniform((0.1, 0.3))) for _ in range(4)]
        blobs.append(box(sc.size, x - 0.4 * h, top + 0.15 * h, x + 0.4 * h, 1.2))
        layer = Layer(sc.size, sc.channels)
        layer.draw(union(*blobs), col, 1.0 + 0.3 * value_noise(sc.rng, sc.size, max(4, sc.size // 6)))
        layer.over(sc.image)
    elif kind == 1:
        paint(sc.image, box(sc.size, x - h * sc.uniform((0.4, 2.0)), top, x + h * sc.uniform((0.4, 2.0)), 1.2), col)
    else:
        edge = x + (1 if sc.chance(0.5) else -1) * h * sc.uniform((0.0, 0.1))
        width = h * frac * 0.5
        paint(sc.image, box(sc.size, edge - width, -0.1, edge + width, 1.1), col)


# --- camera ------------------------------------------------------------------------------------

def _camera(sc: Scene) -> None:
    """Lighting change, night IR mode, shake, defocus, vignette, sensor noise, 8-bit quantisation."""
    r, img = sc.recipe, sc.image
    yy, xx = grid(sc.size)
    if sc.chance(r.lighting_p):  # exposure change, a light gradient and maybe a spotlight
        slope_x, slope_y = sc.uniform((-0.5, 0.5)), sc.uniform((-0.5, 0.5))
        field = sc.uniform((0.55, 1.4)) * (1 + slope_x * (xx - 0.5) + slope_y * (yy - 0.5))
        if sc.chance(0.4):
            spot = ellipse(sc.size, (sc.uniform((0, 1)), sc.uniform((0, 1))), sc.uniform((0.1, 0.4)),
                           sc.uniform((0.1, 0.4)), soft=sc.size * 0.15)
            field = field + sc.uniform((0.2, 0.8)) * spot
        img *= field[..., None]
    night = sc.chance(r.night_p)
    if night:  # infrared night mode: gray, dim, flat, noisy
        gray = img @ LUMA if sc.channels == 3 else img[..., 0]
        img[:] = (sc.uniform((0.05, 0.3)) + sc.uniform((0.5, 0.8)) * gray)[..., None]
    if sc.chance(r.camera_shake_p):
        img[:] = motion_blur(img, sc.uniform((-0.04, 0.04)), sc.uniform((-0.04, 0.04)), sc.size)
    if sc.chance(r.defocus_p):
        img[:] = box_blur(img, 1)
    img *= (1.0 - sc.uniform((0.0, 0.45)) * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2))[..., None]
    if sc.chance(0.5):
        img[:] = np.clip(img, 0, 1) ** sc.uniform((0.7, 1.4))
    sigma = sc.uniform(r.night_noise_sigma if night else r.noise_sigma)
    img += sc.rng.normal(0.0, sigma, size=img.shape).astype(np.float32)
    sc.image = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
