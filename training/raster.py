"""Anti-aliased 2-D drawing on small float images (numpy + PIL only), for the synthetic data set.

Coordinates are normalised: (0, 0) is the top-left corner of the image, (1, 1) the bottom-right,
so a scene drawn once looks the same at 32, 64 or 96 pixels. Shapes are signed-distance
functions turned into coverage (alpha) with a one-pixel ramp, which keeps thin limbs visible
at low resolution. Images are float32 [H, W, C] in 0..1; alphas are float32 [H, W].
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@functools.lru_cache(maxsize=8)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each float32 [size, size] in 0..1 (read-only, cached)."""
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def coverage(dist: np.ndarray, size: int, soft: float = 1.0) -> np.ndarray:
    """Alpha from a signed distance (negative inside): a ramp `soft` pixels wide at the edge."""
    return np.clip(0.5 - dist * (size / soft), 0.0, 1.0).astype(np.float32)


def bar(size: int, p0: tuple[float, float], p1: tuple[float, float], half_width: float,
        rounding: float | None = None, soft: float = 1.0) -> np.ndarray:
    """A rounded bar from p0 to p1 (x, y): a capsule when rounding == half_width (the default)."""
    yy, xx = grid(size)
    rnd = half_width if rounding is None else min(rounding, half_width)
    (x0, y0), (x1, y1) = p0, p1
    length = max(float(np.hypot(x1 - x0, y1 - y0)), 1e-6)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    dx, dy = xx - (x0 + x1) / 2, yy - (y0 + y1) / 2
    along = np.abs(dx * ux + dy * uy) - (length / 2 + half_width - rnd)
    across = np.abs(dy * ux - dx * uy) - (half_width - rnd)
    outside = np.hypot(np.maximum(along, 0), np.maximum(across, 0))
    inside = np.minimum(np.maximum(along, across), 0)
    return coverage(outside + inside - rnd, size, soft)


def ellipse(size: int, centre: tuple[float, float], rx: float, ry: float, angle: float = 0.0,
            soft: float = 1.0) -> np.ndarray:
    """A filled ellipse with radii rx, ry (normalised units) rotated by `angle` radians."""
    yy, xx = grid(size)
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - centre[0], yy - centre[1]
    u, v = (dx * c + dy * s) / rx, (dy * c - dx * s) / ry
    dist = (np.sqrt(u * u + v * v) - 1.0) * min(rx, ry)
    return coverage(dist, size, soft)


def box(size: int, x0: float, y0: float, x1: float, y1: float, soft: float = 1.0) -> np.ndarray:
    """An axis-aligned filled rectangle from (x0, y0) to (x1, y1)."""
    yy, xx = grid(size)
    hx, hy = abs(x1 - x0) / 2, abs(y1 - y0) / 2
    dx = np.abs(xx - (x0 + x1) / 2) - hx
    dy = np.abs(yy - (y0 + y1) / 2) - hy
    dist = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0)) + np.minimum(np.maximum(dx, dy), 0)
    return coverage(dist, size, soft)


def union(*alphas: np.ndarray) -> np.ndarray:
    """Coverage of several shapes of one colour."""
    return np.maximum.reduce(alphas)


def value_noise(rng: np.random.Generator, size: int, cells_x: int, cells_y: int | None = None) -> np.ndarray:
    """Smooth random field in about -1..1: a coarse random grid upsampled bicubically."""
    coarse = rng.uniform(-1.0, 1.0, size=(cells_y or cells_x, cells_x)).astype(np.float32)
    field = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(field, dtype=np.float32)


def paint(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Composite a flat colour (C,) over `image` (H, W, C) with coverage `alpha`, in place."""
    image += alpha[..., None] * (colour - image)


class Layer:
    """A premultiplied RGBA-like layer: draw several parts, optionally blur, then composite."""

    def __init__(self, size: int, channels: int) -> None:
        self.colour = np.zeros((size, size, channels), dtype=np.float32)
        self.alpha = np.zeros((size, size), dtype=np.float32)

    def draw(self, alpha: np.ndarray, colour: np.ndarray, shade: np.ndarray | None = None) -> None:
        """Add a part in front of what the layer holds; `shade` (H, W) multiplies its colour."""
        tint = colour if shade is None else colour * shade[..., None]
        self.colour += alpha[..., None] * (tint - self.colour)
        self.alpha += alpha * (1.0 - self.alpha)

    def blur(self, dx: float, dy: float, size: int) -> None:
        """Motion-blur the layer along (dx, dy) (normalised units)."""
        self.colour = motion_blur(self.colour, dx, dy, size)
        self.alpha = motion_blur(self.alpha[..., None], dx, dy, size)[..., 0]

    def over(self, image: np.ndarray) -> None:
        """Composite this layer over `image` in place."""
        image *= (1.0 - self.alpha)[..., None]
        image += self.colour


def motion_blur(image: np.ndarray, dx: float, dy: float, size: int) -> np.ndarray:
    """Average of the image shifted along a line of length (dx, dy) (normalised), edge-padded."""
    length_px = float(np.hypot(dx, dy)) * size
    steps = int(np.ceil(length_px))
    if steps < 1:
        return image
    pad = steps + 1
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    for t in np.linspace(-0.5, 0.5, steps + 1):
        ox, oy = round(float(t) * dx * size), round(float(t) * dy * size)
        out += padded[pad + oy: pad + oy + h, pad + ox: pad + ox + w]
    return out / (steps + 1)


def box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """Separable box blur of an (H, W, C) image with a (2r+1)-pixel window, edge-padded."""
    if radius < 1:
        return image
    k = 2 * radius + 1
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    csum = np.cumsum(padded, axis=0, dtype=np.float32)
    csum = np.concatenate([np.zeros_like(csum[:1]), csum], axis=0)
    rows = (csum[k:] - csum[:-k]) / k
    csum = np.cumsum(rows, axis=1, dtype=np.float32)
    csum = np.concatenate([np.zeros_like(csum[:, :1]), csum], axis=1)
    return (csum[:, k:] - csum[:, :-k]) / k


def to_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    """An RGB colour (3,) as `channels` values (luma for grayscale)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return rgb if channels == 3 else np.array([rgb @ LUMA], dtype=np.float32)
