"""`rler-eval show RUN`: the run's evidence as pictures, in a static HTML page.

Why: citing frames is the point of RLER, and in samples.jsonl the cited frames are only
numbers. The viewer re-samples each question's frames exactly as the run did (same frame
settings, through the frame cache), so the thumbnail labelled "Frame 3" is the picture the
model saw as frame 3. For every question it shows the question and options, the frame
strip (key frames marked), each candidate's cited frames highlighted, its answer, think
text, C/T/R/E and weight, the vote, the refutation check, the elected and gold answers.

Output: RUN/show/index.html (+ page-2.html, ...), with JPEG thumbnails beside it in
RUN/show/frames/. Pages hold --per-page questions and images load lazily, so a 500-question
run stays light in a browser. No JavaScript and no network: the folder can be zipped and
shared. A question whose video cannot be read still gets its text and scores, with the
reason in place of the strip.
"""

from __future__ import annotations

import html
from pathlib import Path

from rler_eval.errors import InputError

THUMB_HEIGHT = 96  # px, main strip
PER_PAGE = 50


def add_arguments(p) -> None:
    p.add_argument("run", help="run folder (holds config.json and samples.jsonl)")
    p.add_argument("--only", choices=("wrong", "right"), default=None, help="show only wrong or right answers")
    p.add_argument("--family", default=None,
                   help="show only questions of this category value (e.g. a synthvid family or an MVBench task)")
    p.add_argument("--out", default=None, help="output folder [RUN/show]")
    p.add_argument("--per-page", type=int, default=PER_PAGE, help=f"questions per HTML page [{PER_PAGE}]")
    p.add_argument("--cache-dir", default=None, help="frame cache folder [$RLER_CACHE or ~/.cache/rler-eval]")


def cli(args) -> int:
    index = write_viewer(args.run, out=args.out, only=args.only, family=args.family,
                         per_page=args.per_page, cache_dir=args.cache_dir)
    print(f"wrote {index}")
    return 0


# ---------------------------------------------------------------- selecting and loading


def category_values(record: dict) -> set[str]:
    out = set()
    for v in (record.get("category") or {}).values():
        out.update(str(x) for x in (v if isinstance(v, list) else [v]))
    return out


def select(records: list[dict], only: str | None, family: str | None) -> list[dict]:
    """Records matching the filters; a --family that matches nothing names the values that exist."""
    if family is not None:
        known = set().union(*(category_values(r) for r in records)) if records else set()
        if family not in known:
            raise InputError(f"--family {family!r}: no question has it; known values: "
                             f"{', '.join(sorted(known)) or '(none: this run has no categories)'}")
        records = [r for r in records if family in category_values(r)]
    if only == "wrong":
        records = [r for r in records if not is_right(r)]
    elif only == "right":
        records = [r for r in records if is_right(r)]
    return records


def is_right(record: dict) -> bool:
    return record.get("status") == "ok" and float(record.get("score") or 0.0) >= 0.5


def frame_config(config: dict):
    from rler_eval.tasks import FrameConfig

    keys = FrameConfig.__dataclass_fields__.keys()
    return FrameConfig(**{k: v for k, v in (config.get("frames") or {}).items() if k in keys})


def thumbnails(record: dict, cfg, folder: Path, cache_dir: str | None) -> tuple[list[str], str | None]:
    """Relative paths of the frame thumbnails of `record` (written on first use), or a reason
    why there are none. The frames are re-sampled with the run's settings and checked
    against the recorded timestamps, so a changed video is reported, never shown silently."""
    from PIL import Image

    from rler_eval.video import load_frames

    sample = record.get("sample") or {}
    if not sample.get("video"):
        return [], "this question has no video"
    clip = tuple(sample["clip"]) if sample.get("clip") else None
    try:
        fs = load_frames(sample["video"], cfg, clip=clip, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001 - one unreadable video must not stop the page
        return [], f"frames unavailable: {type(e).__name__}: {e}"
    recorded = record.get("frame_times") or []
    if recorded and [round(t, 2) for t in fs.timestamps] != [round(t, 2) for t in recorded]:
        return [], (f"frames unavailable: the video now samples at {fs.timestamps}, the run recorded "
                    f"{recorded} (video or frame settings changed)")
    paths = []
    for k, frame in enumerate(fs.frames, start=1):
        name = f"frames/{safe_name(record['id'])}_{k}.jpg"
        target = folder / name
        if not target.exists():
            img = Image.fromarray(frame)
            w = max(1, round(img.width * THUMB_HEIGHT / img.height))
            img.resize((w, THUMB_HEIGHT)).save(target, quality=85)
        paths.append(name)
    return paths, None


def safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))


# ---------------------------------------------------------------- HTML


def esc(x) -> str:
    return html.escape("" if x is None else str(x))


def fmt_time(t: float) -> str:
    return f"{int(t // 60):02d}:{t % 60:04.1f}"


def letter(i: int) -> str:
    return chr(ord("A") + i)


def render_options(sample: dict, elected, gold) -> str:
    opts = sample.get("options") or []
    if not opts:
        return ""
    items = []
    for i, text in enumerate(opts):
        cls = " ".join(c for c, on in (("gold", letter(i) == gold), ("elected", letter(i) == elected)) if on)
        tags = "".join(f' <span class="tag {c}">{c}</span>' for c in cls.split())
        items.append(f'<li class="{cls}"><b>{letter(i)}.</b> {esc(text)}{tags}</li>')
    return f'<ol class="options">{"".join(items)}</ol>'


def render_strip(thumbs: list[str], times: list[float], key: set[int], cited: set[int]) -> str:
    figs = []
    for k, src in enumerate(thumbs, start=1):
        cls = "frame" + (" key" if k in key else "") + (" cited" if k in cited else "")
        t = f" ({fmt_time(times[k - 1])})" if k - 1 < len(times) else ""
        badge = '<span class="badge">key</span>' if k in key else ""
        figs.append(f'<figure class="{cls}" data-frame="{k}">{badge}<img loading="lazy" src="{esc(src)}" '
                    f'alt="Frame {k}"><figcaption>Frame {k}{t}</figcaption></figure>')
    return f'<div class="strip">{"".join(figs)}</div>'


def render_mini(thumbs: list[str], n_frames: int, key: set[int], cited: list[int]) -> str:
    """The candidate's own strip: its cited frames lit and outlined, the rest dimmed; a cited
    label outside the frame range is listed as out of range."""
    cells = []
    for k in range(1, max(n_frames, len(thumbs)) + 1):
        cls = "mini" + (" cited" if k in cited else "") + (" key" if k in key else "")
        inner = f'<img loading="lazy" src="{esc(thumbs[k - 1])}" alt="">' if k <= len(thumbs) else ""
        cells.append(f'<span class="{cls}" data-frame="{k}" title="Frame {k}">{inner}<i>{k}</i></span>')
    bad = [k for k in cited if not 1 <= k <= max(n_frames, len(thumbs))]
    extra = f' <span class="oor">cited out of range: {", ".join(map(str, bad))}</span>' if bad else ""
    return f'<div class="ministrip">{"".join(cells)}{extra}</div>'


def render_candidates(record: dict, thumbs: list[str], key: set[int]) -> str:
    from rler_eval import evidence

    pred = record["prediction"]
    sample = record.get("sample") or {}
    n_frames = record.get("n_frames") or 0
    rows = []
    for i, cand in enumerate(pred.get("candidates") or []):
        sc = (pred.get("scores") or [])[i] if i < len(pred.get("scores") or []) else {}
        ev = evidence.parse(cand.get("text", ""), n_frames, sample.get("answer_type", "option"), sample.get("options"))
        cited = sc.get("frames", ev.frames) or []
        answer = sc.get("answer", ev.answer)
        cls = "cand" + (" elected" if answer is not None and answer == pred.get("answer") else "")
        nums = "".join(f"<td>{fmt_num(sc.get(s))}</td>" for s in ("C", "T", "R", "E", "weight"))
        rows.append(
            f'<tr class="{cls}" data-cand="{i}" data-cited="{",".join(map(str, cited))}">'
            f'<td>{i + 1}</td><td>{fmt_num(cand.get("temperature"))}</td><td class="ans">{esc(answer)}</td>{nums}'
            f'<td>{render_mini(thumbs, n_frames, key, cited)}</td>'
            f'<td class="think">{esc(ev.think or "(no think text)")}'
            f'<details><summary>raw</summary><pre>{esc(cand.get("text"))}</pre></details></td></tr>')
    head = ("<tr><th>#</th><th>temp</th><th>answer</th><th>C</th><th>T</th><th>R</th><th>E</th><th>weight</th>"
            "<th>cited frames</th><th>think</th></tr>")
    return f'<table class="cands">{head}{"".join(rows)}</table>'


def fmt_num(x) -> str:
    return "" if x is None else (f"{x:.3f}" if isinstance(x, float) else esc(x))


def render_vote(pred: dict) -> str:
    vote = pred.get("vote") or {}
    total = sum(vote.values()) or 1.0
    bars = "".join(f'<div class="vote"><span class="va">{esc(a)}</span><span class="bar" style="width:{180 * w / total:.0f}px">'
                   f'</span> {w:.3f}</div>' for a, w in sorted(vote.items(), key=lambda kv: -kv[1]))
    margin = f" · margin {pred['margin']:.3f}" if isinstance(pred.get("margin"), (int, float)) else ""
    el = pred.get("election") or {}
    stop = f" · stop: {esc(el.get('stop'))}" if el.get("stop") else ""
    return f'<div class="votes"><b>vote</b>{margin}{stop}{bars or " (none)"}</div>'


def render_refutation(pred: dict) -> str:
    ref = pred.get("refutation")
    if not ref:
        return '<div class="refute"><b>refutation</b>: not run</div>'
    checks = "".join(f'<li>{esc(c.get("question"))} → <code>{esc((c.get("reply") or {}).get("text"))}</code> '
                     f'(verdict: {esc(c.get("verdict") or "none: reply not yes/no")})</li>' for c in ref.get("checks") or [])
    return (f'<div class="refute"><b>refutation</b>: {esc(ref.get("outcome"))}, elected {esc(ref.get("elected"))}'
            f'<ul>{checks}</ul></div>')


def render_question(i: int, record: dict, thumbs: list[str], problem: str | None) -> str:
    sample = record.get("sample") or {}
    gold = sample.get("answer")
    status = "error" if record.get("status") != "ok" else ("right" if is_right(record) else "wrong")
    mark = {"right": "✓ right", "wrong": "✗ wrong", "error": "error"}[status]
    fams = ", ".join(f"{k}: {v}" for k, v in (record.get("category") or {}).items())
    parts = [f'<section class="q {status}" id="q-{esc(safe_name(record["id"]))}" data-id="{esc(record["id"])}">',
             f'<h2>{i}. {esc(record["id"])} <span class="mark">{mark}</span> <small>{esc(fams)}</small></h2>',
             f'<p class="question">{esc(sample.get("question"))}</p>']
    if record.get("status") != "ok":
        parts.append(f'<p class="problem">{esc(record.get("error"))}</p></section>')
        return "".join(parts)
    pred = record["prediction"]
    parts.append(render_options(sample, pred.get("answer"), gold))
    key = set(record.get("key_frames") or [])
    elected_cited: set[int] = set()
    for sc in pred.get("scores") or []:
        if sc.get("answer") is not None and sc.get("answer") == pred.get("answer"):
            elected_cited.update(sc.get("frames") or [])
    if problem:
        parts.append(f'<p class="problem">{esc(problem)}</p>')
    else:
        parts.append(render_strip(thumbs, record.get("frame_times") or [], key, elected_cited))
    parts.append(render_candidates(record, thumbs, key))
    parts.append(render_vote(pred))
    parts.append(render_refutation(pred))
    abstain = f" (abstained: {esc(pred.get('abstain_reason'))})" if pred.get("answer") is None else ""
    parts.append(f'<p class="final">elected <b class="elected-answer">{esc(pred.get("answer"))}</b>{abstain} · '
                 f'gold <b class="gold-answer">{esc(gold)}</b> · score {fmt_num(float(record.get("score") or 0.0))} · '
                 f'{pred.get("n_candidates", len(pred.get("candidates") or []))} candidates, '
                 f'{pred.get("model_calls")} model calls</p></section>')
    return "".join(parts)


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}
h1{font-size:20px} h2{font-size:16px;margin:0 0 .3em}
.summary{background:#f4f4f4;padding:.6em 1em;border-radius:6px}
.legend span{margin-right:1.2em}
nav.pages a,nav.pages b{margin-right:.5em}
.toc a{display:inline-block;min-width:2.2em;text-align:center;margin:1px;padding:1px 3px;border-radius:3px;
 text-decoration:none;color:#fff;font-size:12px}
.toc a.right{background:#2e7d32}.toc a.wrong{background:#c62828}.toc a.error{background:#777}
section.q{border:1px solid #ccc;border-left:6px solid #999;border-radius:6px;padding:.6em 1em;margin:1em 0}
section.q.right{border-left-color:#2e7d32} section.q.wrong{border-left-color:#c62828}
.mark{font-size:13px} .right .mark{color:#2e7d32} .wrong .mark{color:#c62828}
.options{list-style:none;padding-left:1em} .options li.gold{font-weight:600} .tag{font-size:11px;padding:0 4px;border-radius:3px;margin-left:4px;color:#fff}
.tag.gold{background:#b8860b}.tag.elected{background:#1565c0}
.strip{display:flex;gap:6px;overflow-x:auto;padding:4px 0}
figure.frame{margin:0;position:relative;border:3px solid transparent;border-radius:4px;text-align:center}
figure.frame img{height:96px;display:block}
figure.frame figcaption{font-size:11px;color:#555}
figure.frame.key{border-color:#b8860b}
figure.frame.cited{box-shadow:0 0 0 3px #1565c0}
.badge{position:absolute;top:2px;left:2px;background:#b8860b;color:#fff;font-size:10px;padding:0 3px;border-radius:2px}
table.cands{border-collapse:collapse;margin:.5em 0;font-size:13px}
table.cands td,table.cands th{border-bottom:1px solid #e4e4e4;padding:3px 6px;vertical-align:top;text-align:left}
tr.cand.elected{background:#eef4fc}
td.think{max-width:40em} td.ans{font-weight:600}
.ministrip{display:flex;gap:2px;align-items:center}
span.mini{position:relative;opacity:.25;border:2px solid transparent;line-height:0}
span.mini img{height:32px} span.mini i{position:absolute;bottom:1px;right:2px;font-size:9px;line-height:1;
 color:#fff;background:rgba(0,0,0,.6);font-style:normal;padding:0 2px}
span.mini.cited{opacity:1;border-color:#1565c0}
span.mini.key{border-bottom-color:#b8860b}
.oor{color:#c62828;font-size:12px}
.votes .vote{display:flex;align-items:center;gap:6px;font-size:13px}
.va{width:5em;overflow:hidden} .bar{display:inline-block;height:10px;background:#1565c0}
.problem{color:#c62828}
pre{white-space:pre-wrap;font-size:12px;background:#fafafa}
"""


def render_page(title: str, summary: str, toc: str, nav: str, body: str) -> str:
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<style>{CSS}</style></head><body><h1>{esc(title)}</h1>{summary}{nav}{toc}{body}{nav}</body></html>\n')


def page_name(p: int) -> str:
    return "index.html" if p == 0 else f"page-{p + 1}.html"


def render_summary(config: dict, records: list[dict], shown: int, only, family) -> str:
    from rler_eval.stats import bootstrap_ci, record_scores

    ci = bootstrap_ci(list(record_scores(records).values()))
    filt = ", ".join(f for f in (f"only {only}" if only else "", f"family {family}" if family else "") if f)
    return (f'<div class="summary">model <b>{esc(config.get("model_label", config.get("model")))}</b> · '
            f'strategy <b>{esc(config.get("strategy"))}</b> · frames {esc((config.get("frames") or {}).get("n"))} · '
            f'accuracy <b>{ci.format()}</b> % (95 % bootstrap interval, n={ci.n}) · '
            f'showing {shown} question(s){" (" + esc(filt) + ")" if filt else ""}'
            '<div class="legend"><span style="color:#b8860b">■ key frame (annotated evidence)</span>'
            '<span style="color:#1565c0">■ cited frame (main strip: frames cited for the elected answer)</span>'
            '<span>C/T/R/E: confidence, transparency, non-redundancy, evidence consistency</span></div></div>')


def write_viewer(run: str | Path, out: str | Path | None = None, only: str | None = None,
                 family: str | None = None, per_page: int = PER_PAGE, cache_dir: str | None = None) -> Path:
    """Write the viewer pages for `run`; returns the path of index.html."""
    from tqdm import tqdm

    from rler_eval.replay import load_run

    if per_page < 1:
        raise InputError("--per-page must be at least 1")
    run = Path(run)
    config, records = load_run(run)
    records = sorted(records, key=lambda r: str(r["id"]))
    chosen = select(records, only, family)
    folder = Path(out) if out else run / "show"
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    cfg = frame_config(config)
    blocks = []
    for i, r in enumerate(tqdm(chosen, desc="show", unit="q", dynamic_ncols=True), start=1):
        thumbs, problem = thumbnails(r, cfg, folder, cache_dir) if r.get("status") == "ok" else ([], None)
        blocks.append(render_question(i, r, thumbs, problem))
    pages = [blocks[i:i + per_page] for i in range(0, len(blocks), per_page)] or [[]]
    title = f"{config.get('task')} · {config.get('strategy')} · {run.name}"
    summary = render_summary(config, records, len(chosen), only, family)
    for p, chunk in enumerate(pages):
        nav = "" if len(pages) == 1 else '<nav class="pages">pages: ' + "".join(
            f"<b>{q + 1}</b>" if q == p else f'<a href="{page_name(q)}">{q + 1}</a>' for q in range(len(pages))) + "</nav>"
        toc = '<div class="toc">' + "".join(
            f'<a class="{"error" if r.get("status") != "ok" else ("right" if is_right(r) else "wrong")}" '
            f'href="{page_name(j // per_page)}#q-{esc(safe_name(r["id"]))}">{j + 1}</a>'
            for j, r in enumerate(chosen)) + "</div>"
        body = "".join(chunk) or "<p>no question matches the filters</p>"
        (folder / page_name(p)).write_text(render_page(title, summary, toc, nav, body), encoding="utf-8")
    return folder / "index.html"
