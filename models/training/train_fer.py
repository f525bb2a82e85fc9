"""Training recipe for edge-fer's own emotion model (FER2013 48x48 grey faces, 7 classes).

    python models/training/train_fer.py train   --data ../shared/datasets/fer2013 --out RUN_DIR [--epochs N]
    python models/training/train_fer.py export  --data ../shared/datasets/fer2013 --out RUN_DIR --dest models/
    python models/training/train_fer.py heldout --data ../shared/datasets/fer2013 --out RUN_DIR [--sample DIR]

`train` checkpoints every epoch into RUN_DIR/last.pt and resumes from it by itself when a run was
cut off: run the same command again. It trains in PyTorch with bfloat16 autocast (fast on CPUs
with AMX or AVX512-BF16, correct everywhere); `export` rebuilds the same network in Keras, copies
the weights, checks that both give the same output, and writes the TFLite models (full int8
calibrated on real training images, and a float16-weight reference) and the ONNX export.
Dependencies: `pip install -e '.[train]'`; none of them is needed at run time. The data path is an
argument; the dataset is never copied into the repository (the tars are unpacked into RUN_DIR/data).

Targets: the original FER2013 label (cross-entropy with label smoothing) on the main head, and the
FERPlus crowd votes of the same image (10 classes, soft cross-entropy) on an auxiliary head that
exists only during training: the votes tell the network what annotators saw without pulling the
main head away from the FER2013 labels every figure is reported against.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FERPLUS = (
    "ferplus_neutral",
    "ferplus_happiness",
    "ferplus_surprise",
    "ferplus_sadness",
    "ferplus_anger",
    "ferplus_disgust",
    "ferplus_fear",
    "ferplus_contempt",
    "ferplus_unknown",
    "ferplus_NF",
)
SIZE = 48
#: Channels of the four stages (48, 24, 12, 6 px) and residual blocks per stage.
WIDTHS = (32, 64, 128, 256)
BLOCKS = (2, 2, 2, 2)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def unpack(data: Path, work: Path) -> Path:
    """Unpack the archives once into `work` (outside the repository)."""
    target = work / "data"
    if not (target / "public_test").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("train.tar", "public_test.tar"):
            with tarfile.open(data / name) as tar:
                tar.extractall(target, filter="data")
    return target


def load_split(data: Path, work: Path, split: str) -> dict[str, np.ndarray]:
    """Images ``x (n,48,48) uint8``, FER2013 labels ``y (n,)``, FERPlus vote counts
    ``votes (n,10)`` and the image paths, cached as RUN_DIR/<split>.npz."""
    cache = work / f"{split}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    import cv2

    root = unpack(data, work)
    xs, ys, votes, paths = [], [], [], []
    with open(data / "labels.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["split"] != split:
                continue
            img = cv2.imread(str(root / row["path"]), cv2.IMREAD_GRAYSCALE)
            if img is None or img.shape != (SIZE, SIZE):
                raise SystemExit(f"{root / row['path']}: unreadable or not {SIZE}x{SIZE}")
            xs.append(img)
            ys.append(CLASSES.index(row["emotion"]))
            votes.append([float(row[c] or 0) for c in FERPLUS])
            paths.append(row["path"])
    out = {"x": np.stack(xs), "y": np.array(ys, np.int64), "votes": np.array(votes, np.float32), "paths": np.array(paths)}
    np.savez_compressed(cache, **out)
    return out


def heldout_split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified held-out part of `train`, with every copy of a pixel-identical image on the same
    side: FER2013 holds ~1,100 duplicate groups, and a copy on each side would inflate held-out
    accuracy (the previous recipe's held-out figure ran 3 points above the public test's)."""
    groups: dict[bytes, list[int]] = {}
    for i in range(len(x)):
        groups.setdefault(hashlib.blake2b(x[i].tobytes(), digest_size=16).digest(), []).append(i)
    order = list(groups.values())
    np.random.default_rng(seed).shuffle(order)
    want = np.bincount(y, minlength=len(CLASSES)) * fraction
    have = np.zeros(len(CLASSES))
    val: list[int] = []
    for members in order:
        c = y[members[0]]
        if have[c] + len(members) <= want[c] + 0.5:
            val.extend(members)
            have[c] += len(members)
    mask = np.zeros(len(y), bool)
    mask[val] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


# ----------------------------------------------------------------------------------------------
# The network (PyTorch for training; `keras_model` rebuilds it for TFLite)
# ----------------------------------------------------------------------------------------------


def torch_model(widths: tuple[int, ...] = WIDTHS, blocks: tuple[int, ...] = BLOCKS, dropout: float = 0.2) -> Any:
    """A ResNet-18-shaped network at half width for 48x48 grey faces: a 3x3 stem at full
    resolution, four stages of basic residual blocks (the first block of stages 2-4 halves the
    resolution with a stride-2 conv and a 1x1 projection), global average pooling, dropout, and
    two heads: `head` (7 FER2013 classes, the exported model) and `aux` (10 FERPlus vote classes,
    training only). 2.8 M parameters: the int8 file stays under 3 MB."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.proj = None
            if stride != 1 or cin != cout:
                self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.proj is None else self.proj(x)))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
            layers: list[nn.Module] = []
            cin = widths[0]
            for stage, (cout, n) in enumerate(zip(widths, blocks)):
                for b in range(n):
                    layers.append(Block(cin, cout, 2 if stage > 0 and b == 0 else 1))
                    cin = cout
            self.body = nn.Sequential(*layers)
            self.drop = nn.Dropout(dropout)
            self.head = nn.Linear(cin, len(CLASSES))
            self.aux = nn.Linear(cin, len(FERPLUS))

        def features(self, x: torch.Tensor) -> torch.Tensor:
            return self.drop(self.body(self.stem(x)).mean(dim=(2, 3)))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            f = self.features(x)
            return self.head(f), self.aux(f)

    return Net()


def augment(x: Any, generator: Any, strength: float = 1.0) -> Any:
    """Batch augmentation on ``(n,1,48,48)`` floats in [0, 1], all in tensor ops: a random affine
    warp (flip, ±15° rotation, ±15 % scale, ±10 % shift; border pixels replicated, as the
    pipeline's alignment does), brightness/contrast/gamma jitter, and random erasing."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]

    def u(lo: float, hi: float, shape: tuple[int, ...] = (n,)) -> torch.Tensor:
        return torch.rand(shape, generator=generator) * (hi - lo) + lo

    angle = u(-15, 15) * math.pi / 180 * strength
    scale = 1 + u(-0.15, 0.15) * strength
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    tx, ty = u(-0.1, 0.1) * 2 * strength, u(-0.1, 0.1) * 2 * strength
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = u(0.7, 1.3).view(n, 1, 1, 1)
    bright = u(-0.12, 0.12).view(n, 1, 1, 1)
    x = ((x - mean) * contrast + mean + bright).clamp(0, 1)
    gamma = torch.exp(u(-0.3, 0.3)).view(n, 1, 1, 1)
    x = x.clamp_min(1e-6) ** gamma
    # Random erasing: half the faces lose one rectangle of 4-25 % of the area (occlusion by a
    # hand or the frame edge), filled with noise.
    erase = torch.rand(n, generator=generator) < 0.5
    area = u(0.04, 0.25) * SIZE * SIZE
    ratio = torch.exp(u(math.log(0.4), math.log(2.5)))
    h = (area * ratio).sqrt().clamp(4, SIZE - 1).long()
    w = (area / ratio).sqrt().clamp(4, SIZE - 1).long()
    y0 = (torch.rand(n, generator=generator) * (SIZE - h)).long()
    x0 = (torch.rand(n, generator=generator) * (SIZE - w)).long()
    rows = torch.arange(SIZE).view(1, SIZE, 1)
    cols = torch.arange(SIZE).view(1, 1, SIZE)
    box = (rows >= y0.view(n, 1, 1)) & (rows < (y0 + h).view(n, 1, 1)) & (cols >= x0.view(n, 1, 1)) & (cols < (x0 + w).view(n, 1, 1))
    box = (box & erase.view(n, 1, 1)).unsqueeze(1)
    noise = torch.rand(x.shape, generator=generator)
    return torch.where(box, noise, x)


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    f1s = []
    for c in range(len(CLASSES)):
        tp = float(np.sum((pred == c) & (y == c)))
        p = tp / max(np.sum(pred == c), 1)
        r = tp / max(np.sum(y == c), 1)
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
    return float(np.mean(f1s))


def predict(model: Any, x: np.ndarray, flip: bool = False, batch: int = 512) -> np.ndarray:
    """Softmax probabilities of the main head for uint8 faces ``(n,48,48)`` (optionally averaged
    with the horizontally flipped face)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for s in range(0, len(x), batch):
            xb = torch.from_numpy(x[s : s + batch]).float().div_(255).unsqueeze(1).contiguous(memory_format=torch.channels_last)
            p = torch.softmax(model(xb)[0].float(), 1)
            if flip:
                p = (p + torch.softmax(model(xb.flip(3))[0].float(), 1)) / 2
            out.append(p.numpy())
    return np.concatenate(out)


class EMA:
    """Exponential moving average of the weights (and BN statistics) for evaluation/export."""

    def __init__(self, model: Any, decay: float) -> None:
        import copy

        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def update(self, model: Any, step: int) -> None:
        import torch

        # Warm-up (as timm's ModelEmaV2 with warmup): early on the average must not be dominated
        # by the random initial weights and BN statistics.
        decay = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, m in zip(self.model.state_dict().values(), model.state_dict().values()):
                if e.dtype.is_floating_point:
                    e.mul_(decay).add_(m.detach(), alpha=1 - decay)
                else:
                    e.copy_(m)


def tflite_weights(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """The dequantized weights of an exported int8 model of this network, read from its graph:
    the 3x3 convs in execution order (stem, then each block's conv1, conv2), the 1x1 projections
    in order, and the dense head. The export folded BatchNorm into each conv, so every conv
    comes with a bias. Weights are returned in PyTorch's (cout, cin, kh, kw) layout."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    details = {t["index"]: t for t in it.get_tensor_details()}

    def const(index: int) -> np.ndarray:
        q = details[index]["quantization_parameters"]
        scales, zeros = q["scales"], q["zero_points"]
        v = it.get_tensor(index).astype(np.float64)
        if len(scales) > 1:
            shape = (-1,) + (1,) * (v.ndim - 1)
            return ((v - zeros.reshape(shape)) * scales.reshape(shape)).astype(np.float32)
        return ((v - (zeros[0] if len(zeros) else 0)) * (scales[0] if len(scales) else 1.0)).astype(np.float32)

    convs3, convs1, head = [], [], None
    for op in it._get_ops_details():
        if op["op_name"] == "CONV_2D":
            w, b = const(op["inputs"][1]), const(op["inputs"][2])
            (convs3 if w.shape[1] == 3 else convs1).append((w.transpose(0, 3, 1, 2).copy(), b))
        elif op["op_name"] == "FULLY_CONNECTED":
            head = (const(op["inputs"][1]), const(op["inputs"][2]))
    if head is None:
        raise SystemExit(f"{path}: no dense head found; not a model of this recipe")
    return convs3, convs1, head


def init_from_tflite(net: Any, path: Path, calib: np.ndarray) -> None:
    """Warm start: load an exported int8 model's dequantized weights into the PyTorch network.
    Each folded conv (weight W, bias b) becomes conv W followed by a BatchNorm whose running
    statistics are those of W's output on real training images (`calib`) and whose affine
    part undoes them (weight sqrt(var + eps), bias mean + b): in eval mode the network computes
    exactly the folded conv, and in training mode batch statistics land close to the running
    ones, so fine-tuning starts from the shipped model instead of from a shock."""
    import torch

    convs3, convs1, (hw, hb) = tflite_weights(path)
    pairs3 = [(net.stem[0], net.stem[1])]
    pairs1 = []
    for block in net.body:
        pairs3 += [(block.conv1, block.bn1), (block.conv2, block.bn2)]
        if block.proj is not None:
            pairs1.append((block.proj[0], block.proj[1]))
    if len(pairs3) != len(convs3) or len(pairs1) != len(convs1):
        raise SystemExit(f"{path}: {len(convs3)}+{len(convs1)} convs, the network has {len(pairs3)}+{len(pairs1)}; not this architecture")
    folded = {}
    with torch.no_grad():
        for (conv, bn), (w, b) in zip(pairs3 + pairs1, convs3 + convs1):
            if tuple(conv.weight.shape) != w.shape:
                raise SystemExit(f"{path}: conv of shape {w.shape} where the network has {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(w))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            folded[bn] = b
        net.head.weight.copy_(torch.from_numpy(hw))
        net.head.bias.copy_(torch.from_numpy(hb))
    # Statistics of each conv's output (the BN's input) on real images.
    sums: dict[Any, list[torch.Tensor]] = {bn: [] for bn in folded}
    hooks = [bn.register_forward_pre_hook(lambda m, inp: sums[m].append(inp[0].detach().float())) for bn in folded]
    net.eval()
    with torch.no_grad():
        for s in range(0, len(calib), 256):
            net(torch.from_numpy(calib[s : s + 256]).float().div(255).unsqueeze(1))
    for h in hooks:
        h.remove()
    with torch.no_grad():
        for bn, b in folded.items():
            acts = torch.cat(sums[bn])
            mean = acts.mean(dim=(0, 2, 3))
            var = acts.var(dim=(0, 2, 3), unbiased=False)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.weight.copy_((var + bn.eps).sqrt())
            bn.bias.copy_(mean + torch.from_numpy(b))
    print(f"warm start from {path}: {len(convs3) + len(convs1)} convs and the head loaded, BatchNorm statistics from {len(calib)} images", flush=True)


def degraded_heldout(x: np.ndarray, y: np.ndarray, va: np.ndarray, per_set: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A stratified subset of the held-out split under each reference degradation of
    `edge_fer.vision.degrade` (the strengths of the targets): the model choices under
    degradation are made here, never on the public test."""
    from edge_fer.vision.degrade import apply_set, reference_sets

    pick = np.sort(np.random.default_rng(seed).choice(va, size=min(per_set, len(va)), replace=False))
    return {name: (apply_set(x[pick], name, seed), y[pick]) for name in reference_sets()}


def degrade_batch(xb: Any, rng: np.random.Generator, p_clean: float, weights: dict[str, float] | None = None) -> Any:
    """Camera degradations (`edge_fer.vision.degrade.random_degradation`, the benchmark's own
    definitions) on a ``(n,1,48,48)`` float batch in [0, 1], image by image."""
    import torch

    from edge_fer.vision.degrade import random_degradation

    imgs = (xb[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    out = np.stack([random_degradation(img, rng, p_clean=p_clean, weights=weights) for img in imgs])
    return torch.from_numpy(out).float().div_(255).unsqueeze(1)


def parse_weights(spec: str | None) -> dict[str, float] | None:
    """``motion=2,jpeg=2,dark=0.5`` → the families' draw weights (1 for a family not named)."""
    if not spec:
        return None
    from edge_fer.vision.degrade import FAMILIES

    weights = {}
    for item in spec.split(","):
        name, _, value = item.partition("=")
        if name.strip() not in FAMILIES:
            raise SystemExit(f"--degrade-weights: unknown degradation {name.strip()!r}; known: {', '.join(FAMILIES)}")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"--degrade-weights: {item!r} is not NAME=NUMBER") from None
    return weights


def cmd_train(args: argparse.Namespace) -> None:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    d = load_split(Path(args.data), out, "train")
    x, y, votes = d["x"], d["y"], d["votes"]
    tr, va = heldout_split(x, y, args.heldout, args.seed)
    if args.all_data:
        tr = np.arange(len(y))  # final fit on all of `train`; the held-out figures then are not held out
    # Images every FERPlus annotator called "not a face" carry no expression to learn.
    tr = tr[votes[tr, FERPLUS.index("ferplus_NF")] < 10]
    np.save(out / "val_indices.npy", va)
    vote_sum = votes.sum(1, keepdims=True)
    soft = np.where(vote_sum > 0, votes / np.maximum(vote_sum, 1), 0).astype(np.float32)
    has_votes = (vote_sum[:, 0] > 0).astype(np.float32)
    xt = torch.from_numpy(x)
    yt, st, ht = torch.from_numpy(y), torch.from_numpy(soft), torch.from_numpy(has_votes)

    torch.manual_seed(args.seed)
    model = torch_model(dropout=args.dropout)
    if args.init_tflite and not (out / "last.pt").exists():
        calib = x[np.random.default_rng(args.seed).choice(tr, size=2048, replace=False)]
        init_from_tflite(model, Path(args.init_tflite), calib)
    if args.init_weights and not (out / "last.pt").exists():
        model.load_state_dict(torch.load(args.init_weights, weights_only=True))
        print(f"warm start from {args.init_weights}", flush=True)
    weights = parse_weights(args.degrade_weights)
    teacher = None
    if args.teacher:
        teacher = torch.from_numpy(np.load(args.teacher)).float()
        if teacher.shape != (len(y), len(CLASSES)):
            raise SystemExit(f"{args.teacher}: shape {tuple(teacher.shape)}, expected ({len(y)}, {len(CLASSES)}); made by `teacher` for this data?")
    model = model.to(memory_format=torch.channels_last)
    ema = EMA(model, args.ema)
    checks = degraded_heldout(x, y, va, args.degraded_heldout, args.seed) if args.degrade < 1 else {}
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim == 1 else decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        momentum=0.9,
        nesterov=True,
    )
    steps_per_epoch = len(tr) // args.batch
    total = steps_per_epoch * args.epochs
    warm = steps_per_epoch * args.warmup

    def lr_at(step: int) -> float:
        if step < warm:
            return args.lr * (step + 1) / warm
        return args.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))

    start_epoch = 0
    history: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(args.seed)
    ckpt = out / "last.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        ema.model.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        start_epoch, history = state["epoch"], state["history"]
        print(f"resumed from {ckpt} after epoch {start_epoch}", flush=True)
    params = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in model.aux.parameters())
    print(f"params (exported) {params:,}; train {len(tr)}, held-out {len(va)}; epochs {args.epochs}", flush=True)
    (out / "config.json").write_text(json.dumps(vars(args), indent=2))
    if start_epoch == 0 and (args.init_tflite or args.init_weights) and checks:
        # Where the warm start stands before any fine-tuning: the figures to beat.
        p0 = predict(ema.model, x[va]).argmax(1)
        accs = {name: round(float(np.mean(predict(ema.model, xs).argmax(1) == ys)), 4) for name, (xs, ys) in checks.items()}
        start = {"epoch": 0, "heldout_acc": round(float(np.mean(p0 == y[va])), 4), "heldout_f1": round(macro_f1(y[va], p0), 4)}
        print(json.dumps(start | {"heldout_degraded_mean": round(float(np.mean(list(accs.values()))), 4), "heldout_degraded": accs}), flush=True)
    for epoch in range(start_epoch, args.epochs):
        model.train()
        t0 = time.time()
        perm = tr[torch.randperm(len(tr), generator=gen).numpy()]
        seen, loss_sum, correct = 0, 0.0, 0
        for s in range(steps_per_epoch):
            idx = torch.from_numpy(perm[s * args.batch : (s + 1) * args.batch])
            step = epoch * steps_per_epoch + s
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            xb = augment(xt[idx].float().div_(255).unsqueeze(1), gen, args.aug)
            if args.degrade < 1:
                # Seeded by (seed, epoch, step): a resumed run draws the same degradations.
                xb = degrade_batch(xb, np.random.default_rng([args.seed, epoch, s]), args.degrade, weights)
            xb = xb.contiguous(memory_format=torch.channels_last)
            yb, sb, hb = yt[idx], st[idx], ht[idx]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits, aux = model(xb)
            logits, aux = logits.float(), aux.float()
            loss = F.cross_entropy(logits, yb, label_smoothing=args.smoothing)
            if teacher is not None:
                # The teacher saw the clean face, the student sees it augmented and degraded:
                # it learns to say on a bad picture what the teacher says on a good one.
                distill = -(teacher[idx] * F.log_softmax(logits, 1)).sum(1).mean()
                loss = (1 - args.distill) * loss + args.distill * distill
            if args.aux_weight > 0:
                aux_loss = -(sb * F.log_softmax(aux, 1)).sum(1)
                loss = loss + args.aux_weight * (aux_loss * hb).sum() / hb.sum().clamp_min(1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema.update(model, step)
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        probs = predict(ema.model, x[va])
        pred = probs.argmax(1)
        record = {
            "epoch": epoch + 1,
            "lr": lr_at((epoch + 1) * steps_per_epoch - 1),
            "loss": loss_sum / seen,
            "train_acc": correct / seen,
            "heldout_acc": float(np.mean(pred == y[va])),
            "heldout_f1": macro_f1(y[va], pred),
            "seconds": time.time() - t0,
        }
        if checks:
            accs = {name: float(np.mean(predict(ema.model, xs).argmax(1) == ys)) for name, (xs, ys) in checks.items()}
            record["heldout_degraded_mean"] = float(np.mean(list(accs.values())))
            record["heldout_degraded_min"] = min(accs.values())
            record["heldout_degraded"] = {k: round(v, 4) for k, v in accs.items()}
        history.append(record)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}), flush=True)
        torch.save(ema.model.state_dict(), out / f"ema_epoch{epoch + 1:03d}.pt")
        state = {
            "model": model.state_dict(),
            "ema": ema.model.state_dict(),
            "opt": opt.state_dict(),
            "gen": gen.get_state(),
            "epoch": epoch + 1,
            "history": history,
        }
        torch.save(state, out / "last.pt.part")
        os.replace(out / "last.pt.part", ckpt)
    torch.save(ema.model.state_dict(), out / "final_ema.pt")
    minutes = sum(float(h["seconds"]) for h in history) / 60
    print(f"trained {args.epochs} epochs in {minutes:.1f} min; final held-out accuracy {history[-1]['heldout_acc']:.4f}", flush=True)


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------


def keras_model(torch_net: Any, flip_tta: bool = False) -> Any:
    """The same network in Keras, with the trained (EMA) weights copied in, softmax inside.
    Stride-2 convs get explicit symmetric padding (Keras' "same" pads only bottom/right when the
    stride is 2, PyTorch pads both sides). With `flip_tta` the model also classifies the mirrored
    face and averages the two probability vectors (test-time augmentation inside the graph)."""
    from tensorflow import keras
    from tensorflow.keras import layers

    def conv(x: Any, tconv: Any, bn: Any) -> Any:
        w = tconv.weight.detach().float().numpy().transpose(2, 3, 1, 0)
        k, stride, pad = tconv.kernel_size[0], tconv.stride[0], tconv.padding[0]
        if pad and stride > 1:
            x = layers.ZeroPadding2D(pad)(x)
        lay = layers.Conv2D(w.shape[3], k, strides=stride, padding="same" if stride == 1 else "valid", use_bias=False)
        x = lay(x)
        lay.set_weights([w])
        b = layers.BatchNormalization(epsilon=bn.eps)
        x = b(x)
        b.set_weights([t.detach().float().numpy() for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)])
        return x

    def trunk(x: Any) -> Any:
        x = layers.ReLU()(conv(x, torch_net.stem[0], torch_net.stem[1]))
        for block in torch_net.body:
            y = layers.ReLU()(conv(x, block.conv1, block.bn1))
            y = conv(y, block.conv2, block.bn2)
            short = x if block.proj is None else conv(x, block.proj[0], block.proj[1])
            x = layers.ReLU()(layers.Add()([y, short]))
        x = layers.GlobalAveragePooling2D()(x)
        dense = layers.Dense(len(CLASSES), name="logits")
        x = dense(x)
        dense.set_weights([torch_net.head.weight.detach().float().numpy().T, torch_net.head.bias.detach().float().numpy()])
        return x

    inputs = keras.Input((SIZE, SIZE, 1), batch_size=1, name="face")
    if not flip_tta:
        return keras.Model(inputs, layers.Softmax(name="probs")(trunk(inputs)), name="edge_fer_emotion")
    # Shared weights: one trunk, run on the face and on its mirror image as a batch of two.
    body = keras.Model(inputs, trunk(inputs))
    mirrored = layers.Lambda(lambda t: t[:, :, ::-1, :])(inputs)
    both = layers.Concatenate(axis=0)([inputs, mirrored])
    probs = layers.Softmax()(body(both))
    mean = layers.Lambda(lambda p: (p[0:1] + p[1:2]) * 0.5, name="probs")(probs)
    return keras.Model(inputs, mean, name="edge_fer_emotion")


def load_trained(out: Path, dropout: float = 0.2, weights: str | None = None) -> Any:
    """The exported weights: RUN/final_ema.pt, or `weights` (e.g. RUN/ema_epoch008.pt, the
    weight average after epoch 8, chosen on the held-out split)."""
    import torch

    net = torch_model(dropout=dropout)
    net.load_state_dict(torch.load(Path(weights) if weights else out / "final_ema.pt", weights_only=True))
    return net.eval()


def fold_logit_adjustment(net: Any, x: np.ndarray, y: np.ndarray, tr: np.ndarray, va: np.ndarray, out: Path, tau: str) -> float:
    """Logit adjustment (Menon et al., 2021): subtract tau * log(class prior) from the head's bias
    so rare classes (disgust: 1.5 % of the data) are not drowned by the prior. ``auto`` picks tau
    on the held-out part of `train` (never the test split), maximising accuracy + macro-F1.
    Folded into the weights: no run-time cost."""
    import torch

    prior = np.bincount(y[tr], minlength=len(CLASSES)) / len(tr)
    logp = np.log(np.clip(predict(net, x[va]), 1e-9, None))
    grid = [float(tau)] if tau != "auto" else [round(t, 2) for t in np.arange(0.0, 1.01, 0.1)]
    scored = []
    for t in grid:
        pred = np.argmax(logp - t * np.log(prior), axis=1)
        acc, f1 = float(np.mean(pred == y[va])), macro_f1(y[va], pred)
        scored.append((acc + f1, t, acc, f1))
        print(f"logit adjustment tau={t:.2f}: held-out accuracy {acc:.4f}, macro-F1 {f1:.4f}", flush=True)
    _, best, acc, f1 = max(scored)
    with torch.no_grad():
        net.head.bias -= torch.from_numpy(best * np.log(prior)).float()
    (out / "logit_adjustment.json").write_text(json.dumps({"tau": best, "prior": prior.tolist(), "heldout_accuracy": acc, "heldout_macro_f1": f1}))
    print(f"logit adjustment: tau = {best} (held-out accuracy {acc:.4f}, macro-F1 {f1:.4f})", flush=True)
    return best


def cmd_export(args: argparse.Namespace) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import torch

    out, dest = Path(args.out), Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    d = load_split(Path(args.data), out, "train")
    x, y = d["x"], d["y"]
    va = np.load(out / "val_indices.npy")
    tr = np.setdiff1d(np.arange(len(y)), va)
    net = load_trained(out, weights=args.weights)
    if args.logit_adjust != "0":
        fold_logit_adjustment(net, x, y, tr, va, out, args.logit_adjust)
    kmodel = keras_model(net, flip_tta=args.flip_tta)
    # The port must be exact: same probabilities from Keras (float32) and PyTorch (float32).
    probe = x[va[:64]]
    with torch.no_grad():
        t_probs = torch.softmax(net(torch.from_numpy(probe).float().div(255).unsqueeze(1))[0], 1).numpy()
        if args.flip_tta:
            xf = torch.from_numpy(probe[:, :, ::-1].copy()).float().div(255).unsqueeze(1)
            t_probs = (t_probs + torch.softmax(net(xf)[0], 1).numpy()) / 2
    k_probs = np.concatenate([kmodel(probe[i : i + 1, :, :, None].astype(np.float32) / 255, training=False).numpy() for i in range(len(probe))])
    diff = float(np.abs(t_probs - k_probs).max())
    print(f"Keras port vs PyTorch: max |probability difference| {diff:.2e}", flush=True)
    if diff > 1e-4:
        raise SystemExit("the Keras port does not reproduce the PyTorch network; not exporting")

    rng = np.random.default_rng(args.seed)
    calib = x[rng.choice(tr, size=args.calibration, replace=False)]

    def representative():  # noqa: ANN202 - TFLite generator
        for img in calib:
            yield [img[None, :, :, None].astype(np.float32) / 255.0]

    def convert(full_int8: bool) -> bytes:
        conv = tf.lite.TFLiteConverter.from_keras_model(kmodel)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if full_int8:  # int8 weights and activations, uint8 input/output: what the Edge TPU takes
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.uint8
            conv.inference_output_type = tf.uint8
        else:  # the float reference: float16 weights, float32 compute
            conv.target_spec.supported_types = [tf.float16]
        return bytes(conv.convert())

    files = {"edge_fer_emotion_float16.tflite": convert(False), "edge_fer_emotion_int8.tflite": convert(True)}
    for name, blob in files.items():
        (dest / name).write_bytes(blob)
        print(f"{dest / name}: {len(blob) / 1e6:.2f} MB, sha256 {hashlib.sha256(blob).hexdigest()}", flush=True)
    if args.onnx:
        export_onnx(net, out / "edge_fer_emotion.onnx", args.flip_tta)
    if args.golden:
        write_golden(kmodel, Path(args.golden))


def write_golden(kmodel: Any, sample: Path) -> None:
    """The float network's probabilities for the committed sample images (SAMPLE/<class>/*.png) as
    SAMPLE/golden_float_probs.json: the int8 model is tested against them on a fresh clone, where
    the float reference (too big to commit) does not exist."""
    import cv2

    golden = {}
    for png in sorted(sample.glob("*/*.png")):
        img = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
        probs = kmodel(img[None, :, :, None].astype(np.float32) / 255, training=False).numpy()[0]
        golden[f"{png.parent.name}/{png.name}"] = [round(float(v), 6) for v in probs]
    (sample / "golden_float_probs.json").write_text(json.dumps({"labels": list(CLASSES), "probs": golden}, indent=1) + "\n")
    print(f"golden float probabilities of {len(golden)} sample images in {sample / 'golden_float_probs.json'}", flush=True)


def export_onnx(net: Any, path: Path, flip_tta: bool) -> None:
    """The same network as ONNX (float32), with the TFLite model's interface: NHWC input in
    [0, 1], softmax probabilities out; for ONNX Runtime and TensorRT."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, face: torch.Tensor) -> torch.Tensor:
            x = face.permute(0, 3, 1, 2)
            p = torch.softmax(self.net(x)[0], 1)
            if flip_tta:
                p = (p + torch.softmax(self.net(x.flip(3))[0], 1)) / 2
            return p

    torch.onnx.export(Wrapped().eval(), (torch.zeros(1, SIZE, SIZE, 1),), str(path), input_names=["face"], output_names=["probs"], dynamo=False)
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB", flush=True)


def cmd_teacher(args: argparse.Namespace) -> None:
    """Soft targets for distillation: the mean probabilities of an ensemble of this recipe's
    models (state dicts ``.pt`` or exported ``.tflite`` files), each averaged with its mirrored
    face, on every clean `train` image, written to OUT/teacher.npy. Held-out images get
    probabilities too (shape follows the data) but are never trained on."""
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    d = load_split(Path(args.data), out, "train")
    x, y = d["x"], d["y"]
    tr, va = heldout_split(x, y, args.heldout, args.seed)
    total = np.zeros((len(x), len(CLASSES)), np.float64)
    for spec in args.models:
        net = torch_model()
        if spec.endswith(".tflite"):
            init_from_tflite(net, Path(spec), x[np.random.default_rng(args.seed).choice(tr, size=2048, replace=False)])
        else:
            net.load_state_dict(torch.load(spec, weights_only=True))
        probs = predict(net, x, flip=True)
        pred = probs[va].argmax(1)
        print(f"{spec}: held-out accuracy {np.mean(pred == y[va]):.4f}, macro-F1 {macro_f1(y[va], pred):.4f}", flush=True)
        total += probs
    total /= len(args.models)
    pred = total[va].argmax(1)
    print(f"ensemble of {len(args.models)}: held-out accuracy {np.mean(pred == y[va]):.4f}, macro-F1 {macro_f1(y[va], pred):.4f}", flush=True)
    np.save(out / "teacher.npy", total.astype(np.float32))
    print(f"wrote {out / 'teacher.npy'}")


def cmd_heldout(args: argparse.Namespace) -> None:
    """Write the held-out images (never trained on) as OUT/heldout/<class>/*.png, the folder
    `edge-fer eval --fit-temperature` calibrates on; with --sample DIR also a small stratified
    sample of them for the repository's regression guard (15 per class)."""
    import cv2

    out = Path(args.out)
    d = load_split(Path(args.data), out, "train")
    x, y, paths = d["x"], d["y"], d["paths"]
    va = np.load(out / "val_indices.npy")
    for i in va:
        folder = out / "heldout" / CLASSES[y[i]]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / Path(str(paths[i])).name), x[i])
    print(f"{len(va)} held-out images in {out / 'heldout'}")
    if args.sample:
        rng = np.random.default_rng(args.seed if args.sample_seed is None else args.sample_seed)
        for c, name in enumerate(CLASSES):
            folder = Path(args.sample) / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in rng.choice(va[y[va] == c], size=15, replace=False):
                cv2.imwrite(str(folder / Path(str(paths[i])).name), x[i])
        print(f"sample of {15 * len(CLASSES)} held-out images in {args.sample}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train (resumes from OUT/last.pt when cut off)")
    export = sub.add_parser("export", help="write the full-int8 and float16 TFLite models (and ONNX)")
    heldout = sub.add_parser("heldout", help="write the held-out images (calibration, regression sample)")
    teach = sub.add_parser("teacher", help="write an ensemble's soft targets for distillation (OUT/teacher.npy)")
    for p in (train, export, heldout, teach):
        p.add_argument("--data", required=True, help="folder with train.tar, public_test.tar, labels.csv")
        p.add_argument("--out", required=True, help="run folder (checkpoints, cache, logs); outside the repo")
        p.add_argument("--seed", type=int, default=20261124)
    train.add_argument("--epochs", type=int, default=100)
    train.add_argument("--batch", type=int, default=128)
    train.add_argument("--lr", type=float, default=0.1, help="peak learning rate (SGD, Nesterov momentum 0.9)")
    train.add_argument("--warmup", type=int, default=3, help="linear warm-up epochs, then cosine decay to 0")
    train.add_argument("--weight-decay", type=float, default=5e-4)
    train.add_argument("--dropout", type=float, default=0.2)
    train.add_argument("--smoothing", type=float, default=0.1, help="label smoothing of the FER2013 targets")
    train.add_argument("--aux-weight", type=float, default=0.5, help="weight of the FERPlus-votes head (0: off)")
    train.add_argument("--aug", type=float, default=1.0, help="strength of the geometric augmentation")
    train.add_argument("--ema", type=float, default=0.999, help="decay of the weight average that is exported")
    train.add_argument("--heldout", type=float, default=0.1, help="fraction of `train` held out")
    train.add_argument("--all-data", action="store_true", help="also train on the held-out part (final fit)")
    train.add_argument("--threads", type=int, default=2)
    train.add_argument("--init-tflite", help="warm start from an exported int8 model of this network (e.g. models/edge_fer_emotion_int8.tflite)")
    train.add_argument(
        "--degrade",
        type=float,
        default=1.0,
        help="share of clean training faces; the rest get camera degradations (edge_fer.vision.degrade) at random strengths (1: off)",
    )
    train.add_argument("--degrade-weights", help="draw weights of the degradation families, e.g. motion=2,jpeg=2,dark=0.5 (default: uniform)")
    train.add_argument("--init-weights", help="warm start from a state dict of this network (e.g. a previous run's final_ema.pt)")
    train.add_argument("--teacher", help="soft targets from `teacher` (OUT/teacher.npy): distill the ensemble's view of the clean face")
    train.add_argument("--distill", type=float, default=0.5, help="weight of the teacher's targets against the labels (with --teacher)")
    train.add_argument("--degraded-heldout", type=int, default=600, help="held-out faces per degraded set checked every epoch")
    export.add_argument("--dest", default="models", help="where the .tflite files go")
    export.add_argument("--weights", help="state dict to export instead of OUT/final_ema.pt (e.g. OUT/ema_epoch008.pt)")
    export.add_argument("--calibration", type=int, default=1000, help="training images used to calibrate int8")
    export.add_argument("--onnx", action="store_true", help="also export ONNX into OUT")
    export.add_argument("--flip-tta", action="store_true", help="average with the mirrored face inside the model")
    export.add_argument("--logit-adjust", default="auto", help="tau for logit adjustment, 'auto' (fit on held-out) or 0 (off)")
    export.add_argument("--golden", help="write the float network's probabilities for the sample images in this folder")
    teach.add_argument("--models", nargs="+", required=True, help="state dicts (.pt) or exported int8 models (.tflite) of this network")
    teach.add_argument("--heldout", type=float, default=0.1, help="fraction of `train` held out (as in train)")
    teach.add_argument("--threads", type=int, default=2)
    heldout.add_argument("--sample", help="also write 15 held-out images per class here (regression guard)")
    heldout.add_argument("--sample-seed", type=int, help="seed of the sample's draw (default: --seed, which also fixes the split)")
    args = parser.parse_args()
    {"train": cmd_train, "export": cmd_export, "heldout": cmd_heldout, "teacher": cmd_teacher}[args.command](args)


if __name__ == "__main__":
    main()
