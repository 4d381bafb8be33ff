"""The data model that flows through rler-eval, in one place.

Why one module: the benchmark adapters, the video sampler, the backends, the election
and the runner all pass these records to each other. Keeping them plain dataclasses
(JSON-serialisable via `asdict`) means every run record can be written, resumed and
replayed offline without the objects that produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

AnswerType = Literal["option", "yesno", "number", "text"]


@dataclass
class Sample:
    """One question as a benchmark adapter hands it to the runner.

    `answer` is normalised per `answer_type`: an option letter ("B"), "yes"/"no", a
    number as a string, or free text. `doc` keeps the official row untouched so that
    scoring and breakdowns read the benchmark's own fields.
    """

    id: str
    task: str
    question: str
    answer: str
    answer_type: AnswerType = "option"
    options: list[str] | None = None  # option texts without letters; letters are A, B, ...
    video: str | None = None  # path to a video file or a folder of frame images
    clip: tuple[float, float] | None = None  # (start, end) seconds within the video
    key_times: list[tuple[float, float]] | None = None  # ground-truth evidence intervals
    images: list[str] = field(default_factory=list)  # extra images appended after frames
    subtitles: str | None = None  # path to an .srt file
    context: list[dict] = field(default_factory=list)  # earlier turns: {"question", "answer"}
    category: dict[str, str] = field(default_factory=dict)  # breakdown name -> value
    doc: dict = field(default_factory=dict)  # the official row as read from disk
    load_error: str | None = None  # a row that could not be read: the runner records this error

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FrameSet:
    """N frames sampled from one video, with the labels the model will cite.

    `frames` is a uint8 array of shape (N, H, W, 3). Labels are 1-based and match the
    `Frame k (mm:ss.s)` captions the prompt shows.
    """

    frames: Any  # numpy.ndarray (N, H, W, 3) uint8
    timestamps: list[float]
    source: str = ""
    duration: float | None = None
    # what identifies `frames`: the frame cache key (video content, decoder, frame choice and
    # resize fix the pixels), else a sha1 of the bytes (`prompt.frames_digest`), so prompts are
    # keyed without hashing megabytes per question; replacing `frames` must replace it too
    digest: str | None = field(default=None, compare=False, repr=False)

    @property
    def labels(self) -> list[int]:
        return list(range(1, len(self.timestamps) + 1))

    def __len__(self) -> int:
        return len(self.timestamps)

    def key_frame_labels(self, key_times: list[tuple[float, float]] | None) -> list[int]:
        """Labels of sampled frames that fall inside any ground-truth interval.

        An interval that no sampled frame hits contributes its nearest frame, so a short
        event between two samples still has a citable key frame.
        """
        if not key_times or not self.timestamps:
            return []
        out: set[int] = set()
        for start, end in key_times:
            hits = [i + 1 for i, t in enumerate(self.timestamps) if start <= t <= end]
            if not hits:
                mid = (start + end) / 2
                hits = [1 + min(range(len(self.timestamps)), key=lambda i: abs(self.timestamps[i] - mid))]
            out.update(hits)
        return sorted(out)


@dataclass
class Prompt:
    """A chat prompt in the transformers content-list format.

    `content` is a list of parts: {"type": "text", "text": str},
    {"type": "image", "image": PIL.Image}, or {"type": "video", "video": FrameSet}.
    The same structure maps directly onto OpenAI-style messages and vLLM inputs.
    """

    content: list[dict]
    system: str | None = None
    n_frames: int = 0  # how many labelled frames the prompt shows (for range checks)
    key: str = ""  # stable hash of the prompt (text + frame identity), used for caching

    def text(self) -> str:
        return "\n".join(p["text"] for p in self.content if p.get("type") == "text")


@dataclass
class Candidate:
    """One generated completion with what the election needs to weigh it."""

    text: str
    token_logprobs: list[float] | None = None  # one per generated token, None if unavailable
    tokens: list[str] | None = None  # decoded text of each generated token
    temperature: float = 0.0
    seed: int | None = None
    n_tokens: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Candidate":
        keys = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in d.items() if k in keys})


@dataclass
class Prediction:
    """What a strategy returns for one sample: the answer plus its full audit trail."""

    answer: str | None
    candidates: list[Candidate]
    strategy: str
    scores: list[dict] = field(default_factory=list)  # per candidate: E C T R, weight, parsed answer
    vote: dict = field(default_factory=dict)  # answer -> total weight
    margin: float | None = None
    refutation: dict | None = None
    abstain_reason: str | None = None
    model_calls: int = 0
    generated_tokens: int = 0
    election: dict = field(default_factory=dict)  # strategy details: drawn, rounds, stop reason, config

    @property
    def n_candidates(self) -> int:
        return len(self.candidates)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_candidates"] = self.n_candidates
        return d
