"""Open the built site in headless Chromium and check that the maths rendered.

For each page: serve `site/` locally (no network), dump the DOM after the page's
scripts ran and require that every `arithmatex` element holds KaTeX output and
that KaTeX reported no parse error; save a screenshot of the page under
`site/_screenshots/` for a person to look at.

Usage: python docs/_tools/check_render.py [site-dir] [--browser PATH]

`nox -s docs` finds (or installs) Chromium and passes it as `--browser`; run
alone, the script looks for Chromium on PATH and stops if there is none.
"""

import argparse
import functools
import http.server
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading


PAGES = (
    "",
    "theory/score-matching/",
    "theory/diffusion/",
    "verify/",
    "api/paths/",
    "api/samplers/",
    "api/likelihood/",
    "api/testing/",
)
# Headless, as root (so no sandbox), and nothing that reaches the network: with
# its background services on, Chromium keeps trying hosts a CI machine cannot
# reach. Each start gets a new, empty profile.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
    "--window-size=1200,1600",
)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit(
        "check_render: no Chromium found; install it (e.g. `apt-get install "
        "chromium`) to check that the documentation's maths renders"
    )


def run(browser: str, url: str, *flags: str) -> str:
    with tempfile.TemporaryDirectory(prefix="check-render-") as profile:
        command = [browser, *FLAGS, f"--user-data-dir={profile}", *flags, url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        sys.exit(
            f"check_render: {browser} exited with {done.returncode} on {url}:\n"
            + done.stderr[-2000:]
        )
    return done.stdout


def check_page(browser: str, base: str, page: str, shots: pathlib.Path) -> list[str]:
    url = base + page
    dom = run(browser, url, "--dump-dom")
    problems = []
    # Each arithmatex element should now open with KaTeX's output.
    chunks = dom.split('class="arithmatex"')[1:]
    maths = len(chunks)
    rendered = sum('class="katex' in chunk[:200] for chunk in chunks)
    if maths == 0 and page.startswith("theory"):
        problems.append(f"{url}: no maths found on a theory page")
    if rendered < maths:
        problems.append(f"{url}: {maths - rendered} of {maths} formulas did not render")
    if "katex-error" in dom:
        problems.append(f"{url}: KaTeX reported a parse error")
    name = (page.strip("/").replace("/", "-") or "index") + ".png"
    run(browser, url, f"--screenshot={shots / name}")
    if not (shots / name).exists():
        problems.append(f"{url}: no screenshot was written")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Check that the built site's maths renders in headless Chromium."
    )
    parser.add_argument("site", nargs="?", default="site", help="the built site")
    parser.add_argument("--browser", help="Chromium's path (default: from PATH)")
    args = parser.parse_args()
    site = pathlib.Path(args.site).resolve()
    browser = args.browser or chromium()
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    shots = site / "_screenshots"
    shots.mkdir(exist_ok=True)
    problems = []
    for page in PAGES:
        problems += check_page(browser, base, page, shots)
    server.shutdown()
    if problems:
        sys.exit("\n".join(problems))
    print(f"check_render: maths rendered on {len(PAGES)} pages; screenshots in {shots}")


if __name__ == "__main__":
    main()
