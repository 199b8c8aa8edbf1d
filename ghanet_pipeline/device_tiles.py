"""Stored JPEG tiles decoded on the job's device: on a GPU by nvJPEG (torchvision's decode_jpeg),
patches assembled and resized there too, so the CPU only reads bytes (`slide_reader: device`).

The same code runs on the CPU (torchvision's libjpeg-turbo), which is how it is tested where there
is no GPU: decoded tiles equal the CPU reader's exactly, and the resize is OpenCV's (INTER_AREA to
shrink, INTER_CUBIC to enlarge) written as two matrix products with OpenCV's own weights, so
patches equal the CPU path's within one grey level. Tiles stay decoded on the device in a small
cache shared by the reader threads, each decoded once while a slide's patches need it.

torchvision 0.29 (pinned) marks its image decoders deprecated in favour of TorchCodec; they still
work there, and moving to TorchCodec belongs with the next torchvision.
"""

from __future__ import annotations

import collections
import threading

import numpy as np
import torch

from .stored_tiles import StoredTiles

CACHE_BYTES = 1 << 30


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out x n_in) weights of OpenCV's resize along one axis: INTER_AREA to shrink (each output
    pixel the mean of the input span it covers, partial pixels by their share), INTER_CUBIC to
    enlarge (a = -0.75, pixel centres aligned, edges replicated)."""
    w = np.zeros((n_out, n_in))
    scale = n_in / n_out
    if n_in == n_out:
        return np.eye(n_in)
    if n_in > n_out:
        for i in range(n_out):
            lo, hi = i * scale, (i + 1) * scale
            for j in range(int(np.floor(lo)), min(n_in, int(np.ceil(hi)))):
                w[i, j] = (min(hi, j + 1) - max(lo, j)) / scale
        return w
    a = -0.75
    for i in range(n_out):
        x = (i + 0.5) * scale - 0.5
        x0 = int(np.floor(x))
        t = x - x0
        for k, d in enumerate((1 + t, t, 1 - t, 2 - t)):
            d = abs(d)
            c = ((a + 2) * d - (a + 3)) * d * d + 1 if d <= 1 else ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
            w[i, min(max(x0 - 1 + k, 0), n_in - 1)] += c
    return w


class OpenCVResize:
    """(B x 3 x n_in x n_in uint8) -> (B x 3 x n_out x n_out uint8) as OpenCV's resize gives it (INTER_AREA
    to shrink, INTER_CUBIC to enlarge), on any device: rows then columns in float, rounded as OpenCV
    rounds that factor, clamped like saturate_cast."""

    def __init__(self, n_in: int, n_out: int, device: torch.device):
        self.n_in, self.n_out = n_in, n_out
        w = torch.from_numpy(resize_matrix(n_in, n_out)).float().to(device)
        self.wy, self.wx = w, w.T.contiguous()
        # OpenCV halves a uint8 image (INTER_AREA, factor 2) in integers, (a + b + c + d + 2) >> 2: half
        # up; every other factor goes through float and saturate_cast: half to even
        self.half_up = n_in == 2 * n_out

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        if self.n_in == self.n_out:
            return raw
        out = self.wy @ raw.float() @ self.wx
        out = out.add_(0.5).floor_() if self.half_up else out.round_()
        return out.clamp_(0, 255).to(torch.uint8)


class DeviceTiles:
    """Batches of patches from `stored`'s tiles, decoded, assembled and resized on `device`."""

    def __init__(self, stored: StoredTiles, device: torch.device, read_size: int, out_size: int):
        self.stored, self.device, self.read_size, self.out_size = stored, device, read_size, out_size
        self.resize = OpenCVResize(read_size, out_size, device)
        self.cache: collections.OrderedDict[int, torch.Tensor] = collections.OrderedDict()
        self.capacity = max(64, CACHE_BYTES // (stored.tw * stored.th * 3))
        self.lock = threading.Lock()
        self.decoded = 0

    def _tiles(self, indices: set[int]) -> dict[int, torch.Tensor]:
        """The decoded tiles (3 x th x tw on the device); the missing ones decoded in one batch."""
        from torchvision.io import decode_jpeg

        with self.lock:
            have = {i: self.cache[i] for i in indices if i in self.cache}
            for i in have:
                self.cache.move_to_end(i)
        missing = sorted(indices - have.keys())
        if missing:
            streams = [torch.frombuffer(bytearray(self.stored.jpeg(i)), dtype=torch.uint8) for i in missing]
            decoded = decode_jpeg(streams, device=self.device)
            with self.lock:
                self.decoded += len(missing)
                for i, tile in zip(missing, decoded):
                    have[i] = self.cache[i] = tile
                while len(self.cache) > self.capacity:
                    self.cache.popitem(last=False)
        return have

    def batch(self, xy: list[tuple[int, int]]) -> tuple[torch.Tensor, list[int]]:
        """(B x out x out x 3 uint8 on the device, the rows this path does not take: OpenSlide's)."""
        plans = [self.stored.pieces(x, y, self.read_size) for x, y in xy]
        tiles = self._tiles({i for plan in plans if plan for i, _, _ in plan})
        raw = torch.zeros((len(xy), 3, self.read_size, self.read_size), dtype=torch.uint8, device=self.device)
        for b, plan in enumerate(plans):
            for i, (sy, sx), (dy, dx) in plan or ():
                raw[b, :, dy, dx] = tiles[i][:, sy, sx]
        out = self.resize(raw)
        self.stored.patches += sum(1 for plan in plans if plan)
        return out.permute(0, 2, 3, 1), [b for b, plan in enumerate(plans) if plan is None]
