"""Benign background traffic: pages, assets, APIs, searches, crawlers and ordinary browsers.

Nothing here may look like an attack: no quotes, angle brackets, '..', SQL or shell words, no
WebDAV methods; the simulator's tests check that no built-in rule fires on it.
"""

from __future__ import annotations

import random
from urllib.parse import quote_plus

from threatscope.simulate.attacks import Req

BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/65.0.3325.181 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/66.0.3359.139 Safari/537.36",
    "Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:59.0) Gecko/20100101 Firefox/59.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_13_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/11.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 11_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/11.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 8.0.0; SM-G950F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/65.0.3325.109 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/64.0.3282.140 Safari/537.36 Edge/17.17134",
    "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
]
CRAWLERS = [
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 15169),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", 8075),
]

ASSETS = [
    "/css/site.min.css", "/css/print.css", "/js/app.min.js", "/js/vendor/jquery-3.3.1.min.js",
    "/images/logo.svg", "/images/hero.jpg", "/images/icons/sprite.png", "/fonts/opensans.woff2",
    "/favicon.ico",
]
SECTOR_PAGES = {
    "biotech": ["/research/", "/pipeline/", "/pipeline/oncology", "/publications/", "/careers/",
                "/news/2018/phase-ii-results", "/partners/", "/investors/"],
    "accounting": ["/services/audit", "/services/tax", "/services/advisory", "/insights/",
                   "/client-portal/login", "/offices/", "/careers/"],
    "retail": ["/shop/", "/shop/mens/jackets", "/shop/womens/boots", "/product/4471",
               "/product/8812", "/cart", "/checkout/shipping", "/stores/", "/sale/"],
    "government": ["/services/permits", "/services/parking", "/council/minutes",
                   "/news/road-works", "/contact/", "/forms/license-renewal", "/jobs/"],
    "education": ["/admissions/", "/courses/", "/courses/computer-science", "/library/",
                  "/calendar/", "/student-portal/", "/research/", "/alumni/"],
    "manufacturing": ["/products/", "/products/bearings", "/products/gearboxes", "/quality/",
                      "/distributors/", "/downloads/catalogue-2018.pdf", "/contact/"],
    "finance": ["/personal/accounts", "/personal/mortgages", "/business/", "/rates/",
                "/online-banking/", "/branches/", "/security/"],
    "healthcare": ["/find-a-doctor/", "/locations/", "/patients/visiting-hours",
                   "/services/cardiology", "/services/maternity", "/billing/", "/careers/"],
    "technology": ["/products/", "/docs/", "/docs/getting-started", "/blog/", "/pricing/",
                   "/status/", "/support/"],
}
SEARCH_WORDS = ["opening hours", "parking", "annual report", "jobs", "contact", "boots size 9",
                "mortgage rates", "flu vaccine", "library hours", "tax return", "catalogue",
                "gift card", "exam timetable", "press release", "warranty"]
_REFERERS = ["-", "https://www.google.com/", "https://www.bing.com/"]
API = ["/api/v1/session", "/api/v1/items?page=2", "/api/v1/items?page=3&sort=price",
       "/api/v1/notifications", "/api/v1/search/suggest?term=win", "/api/v1/cart/count"]


def benign(rng: random.Random, sector: str, ua: str) -> Req:
    """One ordinary request of a visitor with browser ``ua`` to a site of ``sector``."""
    r = rng.random()
    pages = SECTOR_PAGES.get(sector, SECTOR_PAGES["technology"])
    if r < 0.40:
        page = "/" if r < 0.1 else pages[int(rng.random() * len(pages))]
        status = 304 if rng.random() < 0.08 else 200
        return Req("GET", page, status=status, ua=ua, referer=_REFERERS[int(rng.random() * 3)])
    if r < 0.78:
        status = 304 if rng.random() < 0.3 else (404 if rng.random() < 0.02 else 200)
        return Req("GET", ASSETS[int(rng.random() * len(ASSETS))], status=status, ua=ua)
    if r < 0.88:
        method = "POST" if rng.random() < 0.2 else "GET"
        return Req(method, rng.choice(API), status=200, ua=ua,
                   headers={"Accept": "application/json"},
                   body='{"client":"web"}' if method == "POST" else "")
    if r < 0.95:
        q = quote_plus(rng.choice(SEARCH_WORDS))
        return Req("GET", f"/search?q={q}&page={rng.randrange(1, 4)}", status=200, ua=ua)
    if r < 0.98:
        return Req("POST", "/login", status=rng.choice([200, 302, 302]), ua=ua,
                   headers={"Content-Type": "application/x-www-form-urlencoded"},
                   body=f"username=user{rng.randrange(1000)}&password=%2A%2A%2A%2A&remember=1")
    return Req("HEAD", "/", status=200, ua=ua)


def crawl(rng: random.Random, sector: str, ua: str) -> Req:
    """A search-engine crawler fetching robots.txt, the sitemap or a page."""
    pages = SECTOR_PAGES.get(sector, SECTOR_PAGES["technology"])
    uri = rng.choice(["/robots.txt", "/sitemap.xml", *pages])
    return Req("GET", uri, status=200, ua=ua)
