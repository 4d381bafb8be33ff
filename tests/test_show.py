"""`rler-eval show`: the evidence viewer on a real run of the bundled rler-tiny model, checked
in the HTML and in a real headless Chromium (Debian's `chromium`, installed by `make setup`).

The browser is driven through the DevTools protocol over a pipe (`--remote-debugging-pipe`,
stdlib only, no port): it loads the page, waits for the first question's images, reads the
computed style of every candidate's frame cells and screenshots the first question.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent / "rler-eval"
MODEL = REPO / "checkpoints" / "rler-tiny"
CITED_BORDER = "rgb(21, 101, 192)"  # #1565c0 in show.CSS


def cli(*args, env=None, timeout=600):
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def show(*args) -> int:
    """`rler-eval show ...` in this process (the CLI wiring is the same; no interpreter start-up)."""
    from rler_eval.cli import main

    return main(["show", *map(str, args)])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real run: the trained rler-tiny, rler@4, on 4 generated synthvid questions (the synthvid
    card's frame settings and token budget, as it was trained, so it cites frames)."""
    root = tmp_path_factory.mktemp("show")
    card = {"name": "synth_show", "benchmark": "synthvid", "data_root": str(root / "data"), "split": "test",
            "frames": {"n": 8, "max_pixels": 3136}, "prompt": "evidence", "max_new_tokens": 256,
            "strategy": "greedy", "args": {"generate": True, "n": 4, "seed": 0}}
    (root / "card.yaml").write_text(yaml.safe_dump(card))
    out = root / "run"
    r = cli("run", "--task", root / "card.yaml", "--model", MODEL, "--strategy", "rler@4", "--out", out,
            env={"RLER_CACHE": str(root / "cache")})
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def records(run: Path) -> dict:
    return {r["id"]: r for r in map(json.loads, (run / "samples.jsonl").read_text().splitlines())}


def parse(page: Path):
    from lxml import html

    return html.fromstring(page.read_text(encoding="utf-8"))


def test_page_shows_every_question_with_its_frames_and_citations(run_dir, tmp_path):
    r = cli("show", run_dir, "--out", tmp_path / "v")  # once through the installed command
    assert r.returncode == 0, r.stderr[-2000:]
    doc, recs = parse(tmp_path / "v" / "index.html"), records(run_dir)
    sections = doc.xpath("//section[contains(@class,'q')]")
    assert [s.get("data-id") for s in sections] == sorted(recs)
    n_cited = 0
    for sec in sections:
        rec = recs[sec.get("data-id")]
        frames = sec.xpath(".//div[@class='strip']/figure")
        assert len(frames) == rec["n_frames"] == 8
        for fig in frames:  # each thumbnail exists beside the page and carries its caption
            assert (tmp_path / "v" / fig.xpath(".//img/@src")[0]).is_file()
            k = int(fig.get("data-frame"))
            assert fig.xpath("string(.//figcaption)").startswith(f"Frame {k} (")
        key = sorted(int(f.get("data-frame")) for f in frames if "key" in f.get("class").split())
        assert key == rec["key_frames"]
        rows = sec.xpath(".//tr[contains(@class,'cand')]")
        scores = rec["prediction"]["scores"]
        assert len(rows) == len(scores) == rec["prediction"]["n_candidates"]
        for row, sc in zip(rows, scores):
            lit = [int(c.get("data-frame")) for c in row.xpath(".//span[contains(@class,'mini')]")
                   if "cited" in c.get("class").split()]
            assert lit == sorted(k for k in set(sc["frames"]) if 1 <= k <= 8)
            assert row.xpath("string(td[@class='ans'])") == (sc["answer"] or "")
            n_cited += len(lit)
        assert sec.xpath("string(.//b[@class='gold-answer'])") == rec["sample"]["answer"]
        assert sec.xpath("string(.//b[@class='elected-answer'])") == (rec["answer"] or "")
    assert n_cited > 0, "the trained rler-tiny cites frames; a page with none highlighted shows nothing"


def test_filters_and_pagination(run_dir, tmp_path, capsys):
    recs = records(run_dir)
    wrong = sorted(i for i, r in recs.items() if not r["score"] >= 0.5)
    assert show(run_dir, "--only", "wrong", "--out", tmp_path / "w") == 0
    shown = parse(tmp_path / "w" / "index.html").xpath("//section/@data-id")
    assert shown == wrong
    fam = recs[sorted(recs)[0]]["category"]["family"]
    assert show(run_dir, "--family", fam, "--out", tmp_path / "f") == 0
    shown = parse(tmp_path / "f" / "index.html").xpath("//section/@data-id")
    assert shown == sorted(i for i, r in recs.items() if r["category"]["family"] == fam)
    assert show(run_dir, "--family", "no_such_family", "--out", tmp_path / "x") == 2
    assert fam in capsys.readouterr().err  # names the values that exist
    assert show(run_dir, "--per-page", "3", "--out", tmp_path / "p") == 0
    first = parse(tmp_path / "p" / "index.html").xpath("//section/@data-id")
    second = parse(tmp_path / "p" / "page-2.html").xpath("//section/@data-id")
    assert len(first) == 3 and first + second == sorted(recs)
    assert parse(tmp_path / "p" / "index.html").xpath("(//nav[@class='pages'])[1]/a/@href") == ["page-2.html"]


def test_unreadable_video_is_reported_not_fatal(run_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken, ignore=shutil.ignore_patterns("show"))
    lines = (broken / "samples.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["sample"]["video"] = str(tmp_path / "gone.mp4")
    lines[0] = json.dumps(first)
    (broken / "samples.jsonl").write_text("\n".join(lines) + "\n")
    assert show(broken) == 0
    doc = parse(broken / "show" / "index.html")
    sec = doc.xpath("//section")[0]
    assert "video not found" in sec.xpath("string(.//p[@class='problem'])")
    assert len(doc.xpath("//section")[1].xpath(".//div[@class='strip']/figure")) == 8


# ---------------------------------------------------------------- the real browser


def chromium() -> str:
    exe = os.environ.get("RLER_CHROMIUM") or next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if not exe:
        pytest.fail("no chromium found: `make setup` installs Debian's chromium package "
                    "(or: apt-get install chromium; or set RLER_CHROMIUM)")
    return exe


class Browser:
    """A headless Chromium spoken to over --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    def __init__(self, profile: Path):
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def fds():  # in the child, before the fds not in pass_fds are closed: the pipe ends become 3 and 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=fds, pass_fds=(3, 4))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf, self._id, self.session = b"", 0, None

    def send(self, method: str, timeout: float = 60, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while time.time() < deadline:
            while b"\0" not in self._buf:
                chunk = os.read(self._r, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe (exit {self.proc.poll()})")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(method)

    def open(self, url: str, width: int = 1400, height: int = 1000) -> None:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", url=url)

    def eval(self, js: str):
        res = self.send("Runtime.evaluate", expression=js, returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, js: str, timeout: float = 60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.eval(js):
                return
            time.sleep(0.2)
        raise TimeoutError(f"page never satisfied: {js}")

    def close(self) -> None:
        try:
            os.write(self._w, json.dumps({"id": 0, "method": "Browser.close", "params": {}}).encode() + b"\0")
            self.proc.wait(timeout=20)
        except Exception:  # noqa: BLE001 - a stuck browser is killed below
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._w)
        os.close(self._r)


FIRST_QUESTION_STYLES = """(() => {
  const q = document.querySelector('section.q');
  const strip = [...q.querySelectorAll('.strip figure')].map(f => ({
      frame: +f.dataset.frame, key: f.classList.contains('key'),
      border: getComputedStyle(f).borderTopColor, loaded: f.querySelector('img').naturalWidth > 0}));
  const cands = [...q.querySelectorAll('tr.cand')].map(tr => ({
      cited: tr.dataset.cited,
      cells: [...tr.querySelectorAll('span.mini')].map(s => ({
          frame: +s.dataset.frame, opacity: +getComputedStyle(s).opacity,
          border: getComputedStyle(s).borderTopColor, loaded: s.querySelector('img').naturalWidth > 0}))}));
  const r = q.getBoundingClientRect();
  return {id: q.dataset.id, strip, cands, box: [r.left + scrollX, r.top + scrollY, r.width, r.height]};
})()"""


def test_browser_renders_first_question_with_cited_frames_highlighted(run_dir, tmp_path):
    assert show(run_dir, "--out", tmp_path / "v") == 0
    page = tmp_path / "v" / "index.html"
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(page.as_uri())
        browser.wait_for("document.readyState === 'complete' && [...document.querySelector('section.q')"
                         ".querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)")
        got = browser.eval(FIRST_QUESTION_STYLES)
        x, y, w, h = got["box"]
        shot = browser.send("Page.captureScreenshot", format="png",
                            clip={"x": x, "y": y, "width": w, "height": h, "scale": 1})
    finally:
        browser.close()
    rec = records(run_dir)[got["id"]]
    assert got["id"] == sorted(records(run_dir))[0]
    assert all(f["loaded"] for f in got["strip"]) and len(got["strip"]) == 8
    assert [f["frame"] for f in got["strip"] if f["key"]] == rec["key_frames"]
    assert len(got["cands"]) == rec["prediction"]["n_candidates"]
    lit_total = 0
    for cand, sc in zip(got["cands"], rec["prediction"]["scores"]):
        cited = {k for k in sc["frames"] if 1 <= k <= 8}
        for cell in cand["cells"]:
            assert cell["loaded"]
            if cell["frame"] in cited:  # highlighted as the browser draws it: opaque, blue outline
                assert cell["opacity"] == 1 and cell["border"] == CITED_BORDER, cell
                lit_total += 1
            else:
                assert cell["opacity"] < 0.5 and cell["border"] != CITED_BORDER, cell
    assert lit_total > 0
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "first_question.png").write_bytes(png)
    from PIL import Image

    img = Image.open(tmp_path / "first_question.png")
    assert img.width >= 600 and img.height >= 200
    if os.environ.get("RLER_SHOW_SCREENSHOT"):  # keep the picture for a human to look at
        shutil.copy(tmp_path / "first_question.png", os.environ["RLER_SHOW_SCREENSHOT"])
