"""test_dashboard_layout.py - the dashboard's "Bot types" table is never
clipped: at 1400 px wide it fits its panel whole; at 1024 px it fits or
scrolls sideways inside its panel (every column reachable), and the page
itself never gets wider than the window.

Real stack (broker without Redis, no-op workers for several bot types, a
long type name among them, the gateway) and headless Chromium.  Keeps
screenshots in $BOTMESH_ARTIFACTS/dashboard-1400.png and -1024.png.
"""
import os

import harness
from harness import check, log

import cdp
from test_dashboard import start_gateway

TYPES = ["python", "node", "java", "report-generation-nightly"]

MEASURE = """(function(){
    var table = document.getElementById('types');
    var section = table.closest('section');
    var box = table.parentElement;          // the table's own scroller, if any
    var sr = section.getBoundingClientRect(), tr = table.getBoundingClientRect();
    var br = box.getBoundingClientRect();
    var style = getComputedStyle(box);
    var last = table.querySelector('thead th:last-child').getBoundingClientRect();
    return {
        window: window.innerWidth,
        pageWidth: document.documentElement.scrollWidth,
        sectionLeft: sr.left, sectionRight: sr.right,
        tableLeft: tr.left, tableRight: tr.right, tableWidth: table.scrollWidth,
        boxIsSection: box === section, boxRight: br.right,
        boxScrollWidth: box.scrollWidth, boxClientWidth: box.clientWidth,
        boxOverflowX: style.overflowX,
        lastHeaderRight: last.right,
        rows: document.querySelectorAll('#types-body tr[data-type]').length
    };
})()"""


def test():
    with harness.Stack("dashboard-layout") as s:
        s.broker(redis=False)
        for t in TYPES:
            s.worker("--type", t, "--noop", "--concurrency", "4")
        for t in TYPES:
            s.wait_workers(1, bot_type=t)
        base = start_gateway(s, {"REDIS_URL": "none"})
        with cdp.Browser() as browser:
            for width in (1400, 1024):
                page = browser.new_page(width, 900)
                page.goto(base + "/admin/queues")
                page.wait_for("document.querySelectorAll('#types-body tr[data-type]').length >= %d"
                              % len(TYPES), 15, "the bot types' rows")
                m = page.eval(MEASURE)
                log("%d px: %r" % (width, m))
                shot = page.screenshot(harness.artifact("dashboard-%d.png" % width))
                log("screenshot: %s" % shot)
                check(m["pageWidth"] <= m["window"],
                      "%d px: the page is no wider than the window" % width, m)
                if width == 1400:
                    check(m["tableRight"] <= min(m["sectionRight"], m["boxRight"]) + 1
                          and m["lastHeaderRight"] <= m["sectionRight"]
                          and m["boxScrollWidth"] <= m["boxClientWidth"] + 1,
                          "1400 px: the whole table fits its panel, the last column included", m)
                else:
                    fits = m["tableRight"] <= m["sectionRight"]
                    scrolls = (not m["boxIsSection"] and m["boxOverflowX"] in ("auto", "scroll")
                               and m["boxRight"] <= m["sectionRight"]
                               and m["boxScrollWidth"] >= m["tableWidth"])
                    check(fits or scrolls,
                          "1024 px: the table fits its panel or scrolls sideways inside it", m)
                    if not fits:
                        # Scroll it to the end: the last column comes into the panel.
                        page.eval("document.getElementById('types').parentElement.scrollLeft = 1e6")
                        right = page.eval("document.querySelector('#types thead th:last-child')"
                                          ".getBoundingClientRect().right")
                        check(right <= m["sectionRight"], "1024 px: scrolled, the last column is in view",
                              right, m)


if __name__ == "__main__":
    harness.main(test)
