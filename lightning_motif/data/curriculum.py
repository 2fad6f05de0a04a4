"""The per-step data curriculum: mixture, sequence-length and batch-size schedules, and the sample plan.

Motif-2 recomputes the domain mixture every step, interpolated linearly between stages like a learning-rate
schedule, grows the sequence length 4,096 -> 16,384 and ramps the global batch 16M -> 80M tokens (Motif-2-12.7B report, arXiv 2511.07464,
pre-training). Here every one of those is a function of the tokens seen so far, and the whole sample stream is a
pure function of (seed, global sample index, schedule):

- step s trains on B(s) sequences of L(s) tokens; tokens_seen(s) is the exact sum of B * L over earlier steps;
- global sample i (counting across steps) picks its domain with a counter-based hash of (seed, i) against the
  cumulative mixture weights of its step, so proportions follow the schedule within multinomial sampling error;
- each domain's token stream is cut into pages of ``page_tokens`` = max L + 1 tokens, visited in a keyed
  pseudorandom order per epoch; a sample of length L takes the next L + 1 tokens of the current page (windows
  start every L tokens, so the target of one window's last token is the next window's first input).

Because nothing depends on who asks, any number of ranks, loader workers or restarts read the same samples:
rank r of W takes the r-th contiguous slice of each step, loader worker k of K builds steps k, k + K, ...
of its rank, and a resumed run replays the plan up to its saved data position before yielding.
"""

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from components.config_error import ConfigError, require

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(kw_only=True)
class MixtureMilestone:
    """Domain weights that hold once ``tokens`` tokens have been trained on (normalised to sum to 1)."""

    tokens: float
    weights: dict[str, float]

    def __post_init__(self) -> None:
        require(self.tokens >= 0, self, "tokens", "milestones are token counts: use a non-negative number")
        require(all(w >= 0 for w in self.weights.values()) and sum(self.weights.values()) > 0, self, "weights",
                "use non-negative weights with a positive sum")


@dataclass(kw_only=True)
class ValueMilestone:
    """A value (sequence length, or tokens per step) that applies from ``tokens`` tokens on."""

    tokens: float
    value: int

    def __post_init__(self) -> None:
        require(self.tokens >= 0, self, "tokens", "milestones are token counts: use a non-negative number")
        require(self.value >= 1, self, "value", "use a positive number")


def _check_milestones(owner: object, name: str, milestones: list) -> None:
    require(len(milestones) >= 1, owner, name, "give at least one milestone, starting at tokens: 0")
    tokens = [m.tokens for m in milestones]
    require(tokens[0] == 0, owner, name, "the first milestone must start at tokens: 0")
    require(all(a < b for a, b in zip(tokens, tokens[1:])), owner, name, "milestone tokens must increase strictly")


@dataclass(kw_only=True)
class CurriculumSchedule:
    """What every training step reads, as a function of the tokens trained on so far.

    ``mixture``: domain weights, linearly interpolated between milestones (constant after the last).
    ``seq_len``: piecewise constant, each value from its milestone on (for example 4096, then 16384).
    ``batch_tokens``: global tokens per optimizer step, linearly interpolated (a batch ramp); each step uses
    round(batch_tokens / seq_len) sequences, rounded to a multiple of ``batch_multiple``.
    Motif-2's exact stage ratios, warmup and ramp shapes are not published.
    """

    mixture: list[MixtureMilestone]
    seq_len: list[ValueMilestone]
    batch_tokens: list[ValueMilestone]
    batch_multiple: int = 1

    def __post_init__(self) -> None:
        _check_milestones(self, "mixture", self.mixture)
        _check_milestones(self, "seq_len", self.seq_len)
        _check_milestones(self, "batch_tokens", self.batch_tokens)
        require(self.batch_multiple >= 1, self, "batch_multiple", "use a positive number of sequences, e.g. the GPU count")

    @property
    def domains(self) -> list[str]:
        return sorted({d for m in self.mixture for d in m.weights})

    @property
    def max_seq_len(self) -> int:
        return max(m.value for m in self.seq_len)

    def weights_at(self, tokens: float) -> np.ndarray:
        """Normalised mixture over ``self.domains`` after ``tokens`` tokens (linear between milestones)."""
        table = np.array([[m.weights.get(d, 0.0) for d in self.domains] for m in self.mixture], dtype=np.float64)
        table /= table.sum(axis=1, keepdims=True)
        points = [m.tokens for m in self.mixture]
        i = bisect_right(points, tokens) - 1
        if i == len(points) - 1:
            return table[i]
        t = (tokens - points[i]) / (points[i + 1] - points[i])
        return (1 - t) * table[i] + t * table[i + 1]

    def seq_len_at(self, tokens: float) -> int:
        return self.seq_len[bisect_right([m.tokens for m in self.seq_len], tokens) - 1].value

    def batch_tokens_at(self, tokens: float) -> float:
        points = [m.tokens for m in self.batch_tokens]
        values = [float(m.value) for m in self.batch_tokens]
        return float(np.interp(tokens, points, values))

    def sequences_per_step(self, tokens: float) -> int:
        exact = self.batch_tokens_at(tokens) / self.seq_len_at(tokens)
        return max(1, round(exact / self.batch_multiple)) * self.batch_multiple

    def fingerprint(self) -> str:
        return repr((self.mixture, self.seq_len, self.batch_tokens, self.batch_multiple))

    def layout(self) -> Iterator[tuple[int, int, int, np.ndarray]]:
        """Per step from step 0 on: (seq_len, sequences, tokens trained on before the step, mixture weights)."""
        tokens_seen = 0
        while True:
            seq_len, sequences = self.seq_len_at(tokens_seen), self.sequences_per_step(tokens_seen)
            yield seq_len, sequences, tokens_seen, self.weights_at(tokens_seen)
            tokens_seen += seq_len * sequences


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 arrays: a fast counter-based hash with full avalanche."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def uniform(seed: int, indices: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers, a pure function of (seed, index)."""
    keyed = splitmix64(np.asarray(indices, dtype=np.uint64) ^ splitmix64(np.array([seed], dtype=np.uint64)))
    return (keyed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def mix(*values: int) -> int:
    """A 63-bit key that is a pure function of the given integers (stable across processes and Python versions)."""
    state = np.array([0x243F6A8885A308D3], dtype=np.uint64)
    for value in values:
        state = splitmix64(state ^ np.array([value & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    return int(state[0] & np.uint64(0x7FFFFFFFFFFFFFFF))


def permute(indices: np.ndarray, n: int, key: int) -> np.ndarray:
    """A keyed pseudorandom permutation of range(n) applied to ``indices`` (a 4-round Feistel network on the
    smallest even number of bits that covers n, with cycle-walking), so no permutation table is stored."""
    half_bits = max(1, (max(n - 1, 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half_bits) - 1)
    keys = splitmix64(np.arange(4, dtype=np.uint64) + splitmix64(np.array([key], dtype=np.uint64)))
    x = np.asarray(indices, dtype=np.uint64).copy()
    todo = np.ones(x.shape, dtype=bool)
    while todo.any():
        left, right = x[todo] >> np.uint64(half_bits), x[todo] & mask
        for k in keys:
            left, right = right, left ^ (splitmix64(right ^ k) & mask)
        x[todo] = (left << np.uint64(half_bits)) | right
        todo = x >= np.uint64(n)
    return x.astype(np.int64)


@dataclass
class StepSamples:
    """Everything about one optimizer step: its shape, mixture and, per global sample, where its tokens are."""

    step: int
    seq_len: int
    sequences: int
    tokens_before: int
    weights: np.ndarray
    domain: np.ndarray
    """Per sample: index into the plan's domains."""
    page: np.ndarray
    """Per sample: physical page (a TokensLoader block of page_tokens) within its domain."""
    offset: np.ndarray
    """Per sample: first token of the window within the page (the window has seq_len + 1 tokens)."""
    domain_tokens_seen: np.ndarray
    """Per domain: input tokens trained on up to and including this step."""


@dataclass
class _Cursor:
    page: int = 0
    """Logical page counter: page // num_pages is the epoch, page % num_pages the position in its permutation."""
    offset: int = 0


@dataclass
class CurriculumPlan:
    """The sample plan for a schedule over domains with ``domain_pages[d]`` pages of ``page_tokens`` tokens."""

    schedule: CurriculumSchedule
    domain_pages: dict[str, int]
    seed: int
    page_tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.page_tokens = self.schedule.max_seq_len + 1
        self.domains = self.schedule.domains
        missing = [d for d in self.domains if self.domain_pages.get(d, 0) < 1]
        if missing:
            raise ConfigError("CurriculumSchedule", "mixture", missing,
                              f"these domains have no training data of at least {self.page_tokens} tokens "
                              f"(available: {sorted(d for d, n in self.domain_pages.items() if n > 0)})")

    def steps(self, start: int = 0, stride: int = 1) -> Iterator[StepSamples]:
        """Yield the plan of steps start, start + stride, ... (every other step is replayed without being built,
        so a loader worker that serves every stride-th step builds only its own)."""
        cursors = [_Cursor() for _ in self.domains]
        domain_tokens = np.zeros(len(self.domains), dtype=np.int64)
        first_sample = 0
        for step, (seq_len, sequences, tokens_seen, weights) in enumerate(self.schedule.layout()):
            draws = uniform(self.seed, np.arange(first_sample, first_sample + sequences, dtype=np.uint64))
            cumulative = np.cumsum(weights)
            domain = np.searchsorted(cumulative / cumulative[-1], draws, side="right")
            counts = np.bincount(domain, minlength=len(self.domains))
            domain_tokens += counts * seq_len
            if step < start or (step - start) % stride:
                for cursor, count in zip(cursors, counts):
                    self._skip(cursor, int(count), seq_len)
            else:
                page = np.empty(sequences, dtype=np.int64)
                offset = np.empty(sequences, dtype=np.int64)
                for d, cursor in enumerate(cursors):
                    chosen = np.flatnonzero(domain == d)
                    if not len(chosen):
                        continue
                    logical_page, logical_offset = self._windows(cursor, len(chosen), seq_len)
                    n_pages = self.domain_pages[self.domains[d]]
                    epochs = logical_page // n_pages
                    for epoch in np.unique(epochs):
                        in_epoch = epochs == epoch
                        page[chosen[in_epoch]] = permute(logical_page[in_epoch] % n_pages, n_pages,
                                                         key=mix(self.seed, d, int(epoch)))
                    offset[chosen] = logical_offset
                yield StepSamples(step, seq_len, sequences, tokens_seen, weights, domain, page, offset,
                                  domain_tokens.copy())
            first_sample += sequences

    def _position(self, cursor: _Cursor, j: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Logical (page, offset) of the j-th next window of seq_len + 1 tokens after ``cursor``.

        Windows start every seq_len tokens and must end inside the page, so a page of max_seq_len + 1 tokens
        holds max_seq_len // seq_len of them; a window that would cross the page end starts the next page.
        """
        per_page = (self.page_tokens - 1) // seq_len
        left_in_page = max(0, (self.page_tokens - 1 - cursor.offset) // seq_len)
        later = np.maximum(j - left_in_page, 0)
        in_current = j < left_in_page
        pages = np.where(in_current, cursor.page, cursor.page + 1 + later // per_page)
        offsets = np.where(in_current, cursor.offset + j * seq_len, (later % per_page) * seq_len)
        return pages, offsets

    def _windows(self, cursor: _Cursor, count: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the next ``count`` windows; moves the cursor past them."""
        pages, offsets = self._position(cursor, np.arange(count, dtype=np.int64), seq_len)
        cursor.page, cursor.offset = int(pages[-1]), int(offsets[-1]) + seq_len
        return pages, offsets

    def _skip(self, cursor: _Cursor, count: int, seq_len: int) -> None:
        """Move the cursor past ``count`` windows without listing them (replaying steps before a resume)."""
        if count:
            pages, offsets = self._position(cursor, np.array([count - 1], dtype=np.int64), seq_len)
            cursor.page, cursor.offset = int(pages[0]), int(offsets[0]) + seq_len
