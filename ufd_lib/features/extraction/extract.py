"""Feature extraction through the cache: each image is encoded once per setting.

In: an :class:`~ufd_lib.features.encoders.Encoder`, image paths, a
:class:`~ufd_lib.features.extraction.feature_cache.FeatureCache` opened for the encoder
(:func:`open_cache`) and :class:`EngineOptions`. Out: float32 features (n_kept, d) in path order,
a bool mask of the kept paths and an :class:`ExtractionReport` listing every skipped file with its
reason (or :class:`ExtractionError` at the first one when strict).

Files are identified by the SHA-256 of their bytes; the sorted unique digests are cut into fixed
groups of whole batches, and only the groups the cache lacks are decoded, encoded and committed,
one chunk per group. Because the groups depend only on the request, interrupted, shared and
sharded runs encode every image in a batch of the same composition, so their features are equal
bit for bit. ``docs/architecture.md`` describes the plan, claims, sharding and precisions.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ufd_lib import config
from ufd_lib.devices import available_cores, torch_threads
from ufd_lib.features.encoders import Encoder
from ufd_lib.features.extraction.decoding_workers import DecodeSettings, DecodingPool, decoding_pool
from ufd_lib.features.extraction.digest_memo import DigestMemo, identity_of, memo_key, memo_keys
from ufd_lib.features.extraction.feature_cache import FeatureCache, fresh_features
from ufd_lib.features.extraction.layer_caches import LayeredCache, layer_caches
from ufd_lib.features.extraction.sharding import World, even_slice
from ufd_lib.features.extraction.work_claims import GroupClaims, group_id
from ufd_lib.features.preprocess import CHANGED_SINCE_HASHED, Perturbation, preprocess_settings, to_model_input
from ufd_lib.hashing import FileRefused, regular_file_sha256

_WEIGHT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.float32}
_DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
# Seconds between looks at groups that another process is encoding.
CLAIM_POLL_SECONDS = 0.2
# Most threads hashing new files: they help where reading waits on storage, and hashlib releases
# the GIL while it hashes, but on page-cached small files each thread beyond a free core only
# adds switching (benchmarks/README.md).
MAX_HASH_THREADS = 4
# Files each hashing task takes: a task per file costs more than hashing a small image.
HASH_RUN = 64


class ExtractionError(RuntimeError):
    """Raised in strict mode for the first image that cannot be used."""


@dataclass
class EngineOptions:
    """How the engine produces features; everything but the encoder, the images and the precision.

    num_workers: DataLoader decoding processes (None: :func:`default_workers`). max_pixels:
    images with more pixels are refused from their header. max_bytes: files with more bytes are
    refused unread (None: :func:`ufd_lib.config.max_image_bytes`). layers: also cache the CLS
    token of these blocks of a CLIP ViT (:mod:`ufd_lib.features.extraction.layer_caches`), from
    the same forward pass; an image lacking any of them, or the final features, is encoded.
    """

    perturbation: Perturbation = field(default_factory=Perturbation)
    batch_size: int = 64
    num_workers: int | None = None
    strict: bool = False
    max_pixels: int = config.MAX_IMAGE_PIXELS
    max_bytes: int | None = None
    progress: bool = True
    layers: tuple[int, ...] = ()


@dataclass
class ExtractionReport:
    """What one extraction did. skipped: (path, reason) for every unusable file.

    encode_seconds: wall time of decoding, encoding and writing (the slowest rank when
    sharded). precision: the resolved compute precision; world_size: processes that encoded.
    files_hashed: files whose bytes were read to hash them; files_recognised: files whose
    digest came from the file-identity memo, unread.
    """

    images_encoded: int = 0
    images_from_cache: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    encode_seconds: float = 0.0
    precision: str | None = None
    world_size: int = 1
    files_hashed: int = 0
    files_recognised: int = 0

    @property
    def images_per_second(self) -> float | None:
        return self.images_encoded / self.encode_seconds if self.encode_seconds > 0 else None

    def merge(self, other: "ExtractionReport") -> None:
        self.images_encoded += other.images_encoded
        self.images_from_cache += other.images_from_cache
        self.skipped.extend(other.skipped)
        self.encode_seconds += other.encode_seconds
        self.precision = self.precision or other.precision
        self.world_size = max(self.world_size, other.world_size)
        self.files_hashed += other.files_hashed
        self.files_recognised += other.files_recognised


def default_workers(device: torch.device | str, cores: int | None = None) -> int:
    """DataLoader decoding processes when none are asked for: 0 on CPU (the model needs the
    cores); on CUDA ``cores - 1`` (the main process feeds the device), at most
    :data:`ufd_lib.config.MAX_DEFAULT_WORKERS`. cores: those this process may run on."""
    cores = available_cores() if cores is None else cores
    if torch.device(device).type != "cuda":
        return 0
    return max(0, min(config.MAX_DEFAULT_WORKERS, cores - 1))


def hash_threads(cores: int | None = None) -> int:
    """Threads that hash new files: one per core this process may run on beyond the first (which
    the main thread keeps), at least one, at most :data:`MAX_HASH_THREADS`."""
    cores = available_cores() if cores is None else cores
    return max(1, min(MAX_HASH_THREADS, cores - 1))


def resolve_precision(encoder: Encoder, precision: str = "auto") -> str:
    """``auto`` → the encoder's own weight dtype; checks that the device supports the choice."""
    if precision not in config.PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(config.PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return _DTYPE_NAMES.get(encoder.dtype, "fp32")
    if precision == "fp16" and encoder.device.type != "cuda":
        raise ValueError("fp16 extraction needs CUDA; on CPU use bf16 (autocast) or fp32")
    return precision


@contextlib.contextmanager
def compute_precision(encoder: Encoder, precision: str):
    """Run ``encoder.encode`` calls at a resolved precision.

    fp32 and bf16 need fp32 weights, fp16 fp16 weights: the encoder's weights are converted in
    place when they differ, and stay so (fp16 → fp32 is exact, fp32 → fp16 rounds).
    """
    wanted = _WEIGHT_DTYPES[precision]
    if encoder.dtype != wanted:
        encoder.model.to(wanted)
    if precision == "bf16":
        with torch.autocast(encoder.device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def cache_setting(encoder: Encoder, perturbation: Perturbation, precision: str = "auto") -> dict:
    """The cache key of an extraction: encoder identity plus everything in preprocessing.

    bf16 adds ``"precision": "bf16"``; fp32 and fp16 share one key (fp16 compute stays within
    float16 storage rounding of fp32, ``benchmarks/README.md``).
    """
    setting = {
        "encoder": encoder.name,
        "checkpoint_sha256": encoder.checkpoint_sha256,
        "preprocess": preprocess_settings(encoder.mean, encoder.std, perturbation),
        "store_dtype": config.FEATURE_STORE_DTYPE,
    }
    if resolve_precision(encoder, precision) == "bf16":
        setting["precision"] = "bf16"
    return setting


def open_cache(encoder: Encoder, perturbation: Perturbation, cache_root: Path | None = None,
               precision: str = "auto") -> FeatureCache:
    return FeatureCache(cache_root or config.cache_dir(), cache_setting(encoder, perturbation, precision),
                        dim=encoder.embed_dim)


def plan_digests(paths: Sequence[str | Path], memo: DigestMemo | None,
                 max_bytes: int) -> tuple[list[bytes | str], int, int]:
    """(SHA-256 (32 bytes) of each file or the reason it is not read, files hashed, files recognised).

    A regular file whose identity the memo knows is recognised from one ``stat``; the others
    are hashed (:func:`ufd_lib.hashing.regular_file_sha256`, in :func:`hash_threads` threads)
    and, if they stayed unchanged while being read, remembered.
    """
    keys = memo_keys(paths)
    digests: list[bytes | str | None] = memo.lookup(keys) if memo is not None else [None] * len(paths)
    if None not in digests:
        return digests, 0, len(paths)
    to_hash = [i for i, digest in enumerate(digests) if digest is None]

    def digests_of(indices: list[int]):
        found = []
        for index in indices:
            try:
                found.append(regular_file_sha256(keys[index], max_bytes))  # the key: the path as a string
            except FileRefused as error:
                found.append((str(error), None))
        return found

    runs = [to_hash[start : start + HASH_RUN] for start in range(0, len(to_hash), HASH_RUN)]
    threads = hash_threads()
    if threads == 1:
        hashed = [result for run in runs for result in digests_of(run)]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            hashed = [result for run in pool.map(digests_of, runs) for result in run]
    learned = []
    for index, (digest, identity) in zip(to_hash, hashed):
        digests[index] = digest
        if identity is not None:
            learned.append((keys[index], identity_of(identity), digest))
    if memo is not None:
        memo.remember(learned)
    hashed_count = sum(isinstance(digest, bytes) for digest, _ in hashed)
    return digests, hashed_count, len(paths) - len(to_hash)


def _options(options: EngineOptions | None, overrides: dict) -> EngineOptions:
    """``options`` (default: :class:`EngineOptions`()) with some fields replaced by keyword."""
    return dataclasses.replace(options or EngineOptions(), **overrides)


def extract_features(
    encoder: Encoder, paths: Sequence[str | Path], cache: FeatureCache, options: EngineOptions | None = None,
    *, description: str = "encoding", precision: str = "auto", world: World | None = None, **overrides,
) -> tuple[np.ndarray, np.ndarray, ExtractionReport]:
    """Features for ``paths``, encoding only what ``cache`` lacks.

    options: :class:`EngineOptions` (its fields may also be given as keywords, which
    replace the object's: ``batch_size=4, progress=False``). Returns (features float32
    (n_ok, d), kept bool mask (len(paths),), report); rows of ``features`` follow the order of
    the kept paths. Unusable files are skipped and listed in ``report.skipped`` with their
    reason, or raise :class:`ExtractionError` when ``strict``. ``cache`` must have been opened
    for the same ``precision`` (:func:`open_cache`). With a sharded ``world`` every rank must
    call this with the same arguments; each returns the whole result.
    """
    # The result's memory is allocated and touched on another thread while the files are
    # identified (numpy releases the GIL): its page faults cost as much as the conversion that
    # fills it. The thread holds no lock and ends on its own, long before any worker is forked.
    allocated: list[torch.Tensor] = []
    toucher = threading.Thread(target=lambda: allocated.append(fresh_features(len(paths), encoder.embed_dim)),
                               name="ufd-features-memory", daemon=True)
    toucher.start()
    try:
        kept, digests, report = fill_cache(encoder, paths, cache, options, description=description,
                                           precision=precision, world=world, **overrides)
    finally:
        toucher.join()
    out = allocated[0][: int(kept.sum())] if allocated else None
    features = cache.load(digests if kept.all() else [digests[i] for i in np.flatnonzero(kept)], out=out)
    return features, kept, report


def fill_cache(
    encoder: Encoder, paths: Sequence[str | Path], cache: FeatureCache, options: EngineOptions | None = None,
    *, description: str = "encoding", precision: str = "auto", world: World | None = None, **overrides,
) -> tuple[np.ndarray, list[bytes | str], ExtractionReport]:
    """Encode into ``cache`` every image of ``paths`` it lacks, without loading features.

    Returns (kept bool mask (len(paths),), digests (32-byte SHA-256, or the reason a file is
    not read), report). Arguments as in :func:`extract_features`. When sharded, the report
    (identical on every rank) counts the work of all ranks.
    """
    options = _options(options, overrides)
    world = world or World()
    resolved = resolve_precision(encoder, precision)
    if cache.setting.get("precision") != cache_setting(encoder, options.perturbation, resolved).get("precision"):
        raise ValueError(f"the cache {cache.directory} was opened for another precision than {resolved}; "
                         "open it with open_cache(..., precision=...)")
    layers = encoder.check_layers(options.layers) if options.layers else ()
    target = LayeredCache(cache, layer_caches(cache, layers, encoder.layer_tokens.width) if layers else None)
    report = ExtractionReport(precision=resolved, world_size=world.world_size)
    max_bytes = config.max_image_bytes() if options.max_bytes is None else options.max_bytes
    memo = DigestMemo(cache.directory.parent)

    # Each rank identifies a contiguous slice; everyone gets every digest.
    mine = even_slice(len(paths), world.rank, world.world_size)
    try:
        planned = plan_digests(paths[mine.start : mine.stop], memo, max_bytes)
    finally:
        memo.close()
    gathered = world.all_gather(planned)
    digests = [d for part, _, _ in gathered for d in part]
    report.files_hashed = sum(hashed for _, hashed, _ in gathered)
    report.files_recognised = sum(recognised for _, _, recognised in gathered)
    readable: Sequence[int] = range(len(paths))
    if report.files_hashed + report.files_recognised < len(paths):  # some files were not read
        unreadable = [i for i, digest in enumerate(digests) if isinstance(digest, str)]
        for i in unreadable:
            if options.strict:
                raise ExtractionError(f"{paths[i]}: {digests[i]}")
            report.skipped.append((str(paths[i]), digests[i]))
        readable = sorted(set(readable).difference(unreadable))

    # Rank 0 alone reads the cache state, before anyone writes, so that all ranks agree.
    plan = None
    if world.is_main:
        cached = target.contains(digests if len(readable) == len(digests) else [digests[i] for i in readable])
        plan = (len(readable), []) if cached.all() else (int(cached.sum()), _pending_groups(digests, readable, cached,
                                                                                             options.batch_size))
    report.images_from_cache, pending = world.broadcast(plan)
    my_groups = [pending[g] for g in even_slice(len(pending), world.rank, world.world_size)]

    local = ExtractionReport()
    rejected: dict[bytes, str] = {}
    failure: Exception | None = None
    try:
        if my_groups:
            workers = default_workers(encoder.device) if options.num_workers is None else options.num_workers
            # Model input on CPU, written in place batch after batch (to_model_input says why).
            inputs = None
            if encoder.device.type == "cpu":
                inputs = torch.empty((options.batch_size, 3, config.CROP_SIZE, config.CROP_SIZE), dtype=torch.float32)
            encoding = _GroupEncoding(encoder, paths, digests, target, local, options.strict, _WEIGHT_DTYPES[resolved],
                                      inputs)
            encoding.encode_all(my_groups, _Share(
                DecodeSettings(options.perturbation, options.max_pixels, max_bytes, options.batch_size, workers),
                progress=options.progress and world.is_main,
                description=description if world.world_size == 1 else f"{description} (rank 0's share)",
                precision=resolved,
            ))
            rejected = encoding.rejected
    except Exception as error:
        if world.world_size == 1:
            raise
        failure = error  # every rank must still reach the gather below, or the others would hang
    # Also the barrier: when it returns, every rank has committed its chunks.
    message = None if failure is None else f"rank {world.rank}: {type(failure).__name__}: {failure}"
    results = world.all_gather((local.images_encoded, local.encode_seconds, rejected, message))
    if failure is not None:
        raise failure
    failures = [m for *_, m in results if m is not None]
    if failures:
        raise ExtractionError(f"extraction failed on another rank: {failures[0]}")
    for encoded, seconds, rank_rejected, _ in results:
        report.images_encoded += encoded
        report.encode_seconds = max(report.encode_seconds, seconds)
        rejected.update(rank_rejected)

    kept = np.zeros(len(paths), dtype=bool)
    kept[readable] = True
    forget = []
    for i in (readable if rejected else ()):
        if digests[i] in rejected:
            kept[i] = False
            report.skipped.append((str(paths[i]), rejected[digests[i]]))
            if rejected[digests[i]] == CHANGED_SINCE_HASHED:
                forget.append(memo_key(paths[i]))
    if forget and world.is_main:  # a changed file must be hashed again next time
        memo.forget(forget)
        memo.close()
    return kept, digests, report


def _pending_groups(digests: Sequence[bytes | str], readable: Sequence[int], cached: np.ndarray,
                    batch_size: int) -> list[list[int]]:
    """The groups (:func:`encoding_groups`, as lists of indices into ``digests``, the first file
    of each digest) holding a digest of ``readable`` that is not ``cached`` (bool, per readable)."""
    first_of_digest: dict[bytes, int] = {}
    for i in readable:
        first_of_digest.setdefault(digests[i], i)
    done = {digests[i] for i, hit in zip(readable, cached) if hit}
    groups = encoding_groups(sorted(first_of_digest), batch_size)
    return [[first_of_digest[d] for d in group] for group in groups if not done.issuperset(group)]


def encoding_groups(unique_digests: Sequence[bytes], batch_size: int) -> list[list[bytes]]:
    """Cut the sorted unique digests of a request into the groups extraction works in.

    A group is a whole number of batches, about :func:`ufd_lib.config.cache_chunk_images` images; it is
    claimed (:mod:`ufd_lib.features.extraction.work_claims`), encoded in batches cut from its start, and committed
    as one chunk. The groups depend only on the request, never on what the cache holds, so a
    run that was interrupted, shared with another process or sharded encodes every image in a
    batch of the same composition as one uninterrupted run.
    """
    size = batch_size * max(1, config.cache_chunk_images() // batch_size)
    return [list(unique_digests[start : start + size]) for start in range(0, len(unique_digests), size)]


class _ClaimedBatches:
    """Batch sampler over ``groups`` (lists of indices into ``paths``): claims each group in
    turn, then yields batches of those of its images the cache still lacks, each item
    (ring slot, position in the batch, index, path, digest), the slots taken in turn.

    Groups held by another live process are left in ``deferred``. ``in_flight`` lists, in
    order, [group id, batches not yet consumed] of every claimed group whose batches were
    handed out, so the consumer knows when a group is complete.
    """

    def __init__(self, groups, paths, digests, cache: LayeredCache, claims: GroupClaims, batch_size: int, slots: int):
        self.groups, self.paths, self.digests, self.cache, self.claims = groups, paths, digests, cache, claims
        self.batch_size, self.slots = batch_size, slots
        self.deferred: list[list[int]] = []
        self.in_flight: collections.deque[list] = collections.deque()

    def __iter__(self):
        handed_out = 0
        for group in self.groups:
            keys = [self.digests[i] for i in group]
            if self.cache.contains(keys).all():
                continue
            claim = group_id(keys)
            if not self.claims.try_claim(claim):
                self.deferred.append(group)
                continue
            self.cache.remove_leftovers(claim)  # a writer of this group that died mid-write
            missing = [i for i, hit in zip(group, self.cache.contains(keys)) if not hit]  # again, now claimed
            if not missing:
                self.claims.release(claim)
                continue
            batches = [missing[start : start + self.batch_size] for start in range(0, len(missing), self.batch_size)]
            self.in_flight.append([claim, len(batches)])
            for batch in batches:
                slot = handed_out % self.slots
                handed_out += 1
                yield [(slot, position, index, str(self.paths[index]), self.digests[index])
                       for position, index in enumerate(batch)]


@dataclass(frozen=True)
class _Share:
    """How a rank encodes its share: decoding settings, progress bar, compute precision."""

    settings: DecodeSettings
    progress: bool
    description: str
    precision: str


@dataclass
class _GroupEncoding:
    """The state of encoding a rank's share of groups into the cache: what is encoded (encoder,
    paths, their digests), where to (cache, with the layers it holds; claims), how (strict, weight
    dtype, the CPU model-input buffer ``inputs`` or None) and what happened (report, rejected
    {digest: reason})."""

    encoder: Encoder
    paths: Sequence[str | Path]
    digests: Sequence[bytes | str]
    cache: LayeredCache
    report: ExtractionReport
    strict: bool
    dtype: torch.dtype
    inputs: torch.Tensor | None
    claims: GroupClaims = field(init=False)
    rejected: dict[bytes, str] = field(default_factory=dict)

    def __post_init__(self):
        self.claims = GroupClaims(self.cache.directory)

    def reject(self, index: int, reason: str) -> None:
        """File ``index`` cannot be used: raise in strict mode, else remember why."""
        if self.strict:
            raise ExtractionError(f"{self.paths[index]}: {reason}")
        self.rejected[self.digests[index]] = reason

    def encode_all(self, groups: list[list[int]], share: _Share) -> None:
        """Encode ``groups`` (lists of indices into ``paths``), one chunk each, waiting for groups
        that other processes hold until they are committed or their holder dies."""
        started = time.perf_counter()
        total = int(sum((~self.cache.contains([self.digests[i] for i in group])).sum() for group in groups))
        try:
            with tqdm(total=total, desc=share.description, unit="img", disable=not share.progress) as bar, \
                    compute_precision(self.encoder, share.precision), decoding_pool(share.settings) as pool:
                remaining = groups
                while remaining:
                    remaining = self.encode_pass(remaining, pool, bar)
                    if remaining:
                        time.sleep(CLAIM_POLL_SECONDS)
        finally:
            self.claims.release_all()
        self.report.encode_seconds += time.perf_counter() - started

    def encode_pass(self, groups: list[list[int]], pool: DecodingPool, bar) -> list[list[int]]:
        """One pass over ``groups``, decoded by ``pool``; returns the groups other processes held."""
        ring = pool.ring
        sampler = _ClaimedBatches(groups, self.paths, self.digests, self.cache, self.claims,
                                  pool.settings.batch_size, slots=len(ring))
        # The host's own work runs on one torch thread, and so does the model unless it runs on
        # the CPU: left with the default pool, every op big enough to split wakes an OpenMP thread
        # per core, which then spins on a core a decoding worker needs.
        model_threads = None if self.encoder.device.type == "cpu" else 1
        layers = tuple(self.cache.layers)
        keys: list[bytes] = []
        features: list[np.ndarray] = []
        tokens: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
        batches = pool.batches(sampler)
        while True:
            with torch_threads(1):
                item = next(batches, None)
            if item is None:
                return sampler.deferred
            slot, good, bad = item
            for i, reason in bad:
                self.reject(i, reason)
            if good:
                positions = [position for position, _ in good]
                indices = np.asarray([index for _, index in good])
                pixels = ring[slot, : len(good)] if positions[-1] == len(good) - 1 else ring[slot, positions]
                with torch_threads(1):
                    model_input = to_model_input(pixels, self.encoder.mean, self.encoder.std, self.encoder.device,
                                                 self.dtype, out=self.inputs)
                with torch_threads(model_threads):
                    if layers:  # every layer and the final embedding from one forward pass
                        final, by_layer = self.encoder.encode_layers(model_input, layers)
                        rows, layer_rows = final.numpy(), {layer: by_layer[layer].numpy() for layer in layers}
                    else:
                        rows, layer_rows = self.encoder.encode(model_input).numpy(), {}
                finite = np.isfinite(rows).all(axis=1)
                for values in layer_rows.values():
                    finite &= np.isfinite(values).all(axis=1)
                for i in indices[~finite]:
                    self.reject(i, f"the encoder {self.encoder.name} gave non-finite features (NaN or infinity)")
                features.append(rows[finite])
                for layer, values in layer_rows.items():
                    tokens[layer].append(values[finite])
                keys.extend(self.digests[i] for i in indices[finite])
                self.report.images_encoded += int(finite.sum())
            bar.update(len(good) + len(bad))
            group = sampler.in_flight[0]
            group[1] -= 1
            if group[1] == 0:  # the group's last batch: commit its chunk, then let the claim go
                if keys:
                    self.cache.write_chunk(keys, np.concatenate(features), tag=group[0],
                                           tokens={layer: np.concatenate(rows) for layer, rows in tokens.items()})
                self.claims.release(group[0])
                sampler.in_flight.popleft()
                keys, features = [], []
                tokens = {layer: [] for layer in layers}
