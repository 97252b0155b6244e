"""The HTML scorecard report rendered in headless Chromium: page, charts and their pixels.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``); without it the test
fails, because an unrendered report proves nothing about what a channel manager sees.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from rules.report import render, render_csv, render_json, render_table
from rules.report_html import HISTOGRAM, OWN, PALETTE, PEERS, REGISTERED, UNREGISTERED
from tests.rules.test_scorecards import report

WIDTH, HEIGHT = 1280, 1100
CHARTS = ("chart-win-rate", "chart-deal-size", "chart-days-to-close", "chart-active")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("headless Chromium is required for the HTML report test: "
                    "install Debian's package with `apt-get install -y chromium`")
    return found


def run_chromium(page: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}",
        "--hide-scrollbars", "--force-device-scale-factor=1", *mode, page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=True)


def decode_png(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """Width, height, bytes per pixel and unfiltered rows of an 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, bytearray(), 0
    height = bpp = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6) and body[12] == 0, "unexpected PNG layout"
            bpp = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(bytes(idat)), width * bpp
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = previous[i], previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        previous = rows[-1]
    return width, height, bpp, rows


def hex_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def count_pixels(
    rows: list[bytes], bpp: int, box: list[int], colors: tuple[str, ...]
) -> dict[str, int]:
    """Pixels in ``box`` (left, top, width, height) close to each color, and non-white ones."""
    targets = {c: hex_rgb(c) for c in colors}
    counts = dict.fromkeys((*colors, "ink"), 0)
    left, top, width, height = box
    for y in range(max(0, top), min(len(rows), top + height)):
        row = rows[y]
        for x in range(max(0, left), left + width):
            r, g, b = row[x * bpp], row[x * bpp + 1], row[x * bpp + 2]
            if r < 235 or g < 235 or b < 235:
                counts["ink"] += 1
            for name, (tr, tg, tb) in targets.items():
                if abs(r - tr) + abs(g - tg) + abs(b - tb) < 30:
                    counts[name] += 1
    return counts


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, list[bytes], int]:
    folder = tmp_path_factory.mktemp("report")
    page = folder / "scorecards.html"
    page.write_text(render(report(), "html"), encoding="utf-8")
    dom = run_chromium(page, folder / "profile-dom", "--dump-dom").stdout
    shot = folder / "scorecards.png"
    run_chromium(page, folder / "profile-shot", f"--screenshot={shot}")
    width, height, bpp, rows = decode_png(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    return page.read_text(encoding="utf-8"), dom, rows, bpp


def test_the_page_is_self_contained(rendered: tuple[str, str, list[bytes], int]) -> None:
    html = rendered[0]
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert re.findall(r"\b(?:src|href)=", html) == []
    # the only URL is the SVG namespace, which browsers never fetch
    assert set(re.findall(r"https?://[^'\" ]+", html)) == {"http://www.w3.org/2000/svg"}


def test_chromium_renders_every_chart_with_its_elements(
    rendered: tuple[str, str, list[bytes], int],
) -> None:
    dom = rendered[1]
    layout = json.loads(re.search(r"data-layout=\"([^\"]+)\"", dom)[1].replace("&quot;", '"'))  # type: ignore[index]  # the page always sets it
    assert sorted(layout) == sorted(CHARTS)
    for box in layout.values():
        assert box[2] > 300 and box[3] > 80 and box[1] + box[3] <= HEIGHT
    assert len(re.findall(r"<polyline", dom)) == 2  # D4 and D1 hold registrations over time
    assert dom.count(f"fill=\"{REGISTERED}\"") == 3  # D1, D3, D4 have a registered win rate
    assert dom.count(f"fill=\"{UNREGISTERED}\"") == 2  # D1 and D2
    assert dom.count(f"fill=\"{HISTOGRAM}\"") == 13  # one bar per 30-day bucket
    assert "paper partner: 20 registrations, 10.0% won, 13 months" in dom


def test_chart_pixels_are_drawn(rendered: tuple[str, str, list[bytes], int]) -> None:
    _, dom, rows, bpp = rendered
    layout = json.loads(re.search(r"data-layout=\"([^\"]+)\"", dom)[1].replace("&quot;", '"'))  # type: ignore[index]  # as above
    expected = {
        "chart-win-rate": (REGISTERED, UNREGISTERED),
        "chart-deal-size": (OWN, PEERS),
        "chart-days-to-close": (HISTOGRAM,),
        "chart-active": PALETTE[:2],
    }
    for chart, colors in expected.items():
        counts = count_pixels(rows, bpp, layout[chart], colors)
        for color in colors:
            assert counts[color] > 150, f"{chart}: too few {color} pixels: {counts}"
        assert counts["ink"] > 1500, f"{chart} looks blank: {counts}"


def test_text_formats_carry_the_same_figures() -> None:
    result = report()
    table = render_table(result)
    assert "paper partner" in table and "1 CHF = 1.05 EUR, 1 USD = 0.9 EUR" in table
    lines = render_csv(result).splitlines()
    assert lines[0].startswith("rank,distributor,territory,active_registrations")
    assert lines[1].startswith("1,D1,DACH,2,2800.00,4,1,1,0,2,0.6667,0.5000,6,50250.00,8375.00")
    data = json.loads(render_json(result))
    assert data["rates_used"] == {"CHF": "1.05", "EUR": "1", "USD": "0.9"}
    assert data["scorecards"][3]["verdict_figures"]["win_rate_registered"] == "0.1000"
    with pytest.raises(ValueError, match="unknown report format 'pdf'"):
        render(result, "pdf")
