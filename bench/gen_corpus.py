#!/usr/bin/env python3
"""Generate a synthetic, deterministic feed corpus for benchmarking feedsieve.

The corpus imitates what a feed aggregator meets in the wild:

* formats: ~50% RSS 2.0, ~30% Atom 1.0, ~15% RSS 1.0 (RDF), ~5% JSON Feed 1.1
  (exact shares, rounded, so small corpora keep the mix); --formats keeps a
  subset at the same relative shares (rss2,atom,rss1 for comparisons with
  readers that cannot read JSON Feed: ~53% / ~32% / ~16%);
* ~10% of the XML feeds are encoded as ISO-8859-1 (declared in the prolog) and
  contain Latin-1 letters (é, ü, ø, ...); characters outside Latin-1 appear
  there as numeric character references, as real CMSs write them;
* item bodies of 300-3000 bytes of HTML (paragraphs, relative and absolute
  links, images, entities), about 2.5-3 KB per item on disk overall;
* active content that a sanitiser must remove in ~6% of items (mostly
  <script>, sometimes event handlers, javascript: links, iframes, forms,
  style tricks);
* identifiers: guids on most items; some RSS 2.0 feeds give only links; a few
  RSS 2.0 items have neither (their key has to be a content hash);
* dates spread over the 60 days before --now: RFC 822 in RSS 2.0, RFC 3339 in
  Atom, JSON Feed and RSS 1.0 (dc:date is W3C-DTF, a profile of RFC 3339),
  with assorted time zones;
* a fixed news-like vocabulary; ~5% of the original stories are about border
  security and carry at least one of the phrases "border security",
  "migrant smuggling" or "human trafficking". Those words never occur
  elsewhere in a way that would make one of the phrases (a few decoys such as
  "drug trafficking" or "human rights" do occur), so the number of matching
  items is known exactly and recorded in the manifest;
* ~8% of the items are syndicated near-duplicates of an item from another
  feed: a changed headline, a dateline ("LONDON (Wire) - "), a few words
  changed, relative links made absolute, and the original link with utm_*
  parameters added. A story may be syndicated by several feeds.

Output in --out DIR: feed-00001.xml ... (feed-NNNNN.json for JSON Feed),
feeds.tsv (header line "id<TAB>path", then one line per feed) and
manifest.json (totals, per-format counts, the topic's expected matches and
the list of near-duplicate pairs).

Determinism: the same --seed, --feeds, --items and --now give byte-identical
files. --now defaults to the start of the current UTC day, so reruns on the
same day are identical and the dates stay "recent" for topics with max_age.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import random
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

GENERATOR = "feedsieve bench/gen_corpus.py 1"

# --------------------------------------------------------------------------
# Proportions (shares of feeds or items); see the module docstring.
# --------------------------------------------------------------------------
FORMAT_SHARES = [("rss2", 0.50), ("atom", 0.30), ("rss1", 0.15), ("json", 0.05)]
LATIN1_SHARE = 0.10          # of XML feeds
NEAR_DUP_SHARE = 0.08        # of all items
TOPIC_SHARE = 0.05           # of original stories
ACTIVE_CONTENT_SHARE = 0.06  # of original stories
RSS2_LINK_ONLY_FEEDS = 0.20  # RSS 2.0 feeds whose items have a link but no guid
RSS2_NO_ID_ITEMS = 0.03      # RSS 2.0 items (not near-duplicates) with neither
DAYS = 60                    # dates spread over this many days before --now
BODY_MIN, BODY_MAX = 300, 3000  # bytes of HTML per item body (UTF-8)
BODY_MODE = 2300                # mode of the triangular body-size distribution

TOPIC_ID = "border-security"
TOPIC_PHRASES = ["border security", "migrant smuggling", "human trafficking"]
TOPIC_QUERY = " OR ".join(f'"{p}"' for p in TOPIC_PHRASES)

# --------------------------------------------------------------------------
# Vocabulary. The words "border", "migrant", "smuggling", "trafficking" and
# "human" are deliberately absent from the general lists: they appear only in
# TOPIC_PHRASES and in DECOYS, so no topic phrase can arise by chance (FTS5
# ignores punctuation, so even "...at the border. Security..." would match).
# --------------------------------------------------------------------------
NOUNS = """government minister ministry council parliament committee court
judge election campaign voters party coalition opposition budget tax economy
market inflation prices wages workers union strike industry company bank
investors shares growth exports imports trade tariff deal agreement treaty
summit talks negotiations leaders president mayor governor officials police
officers investigation report inquiry audit data survey study researchers
scientists university school teachers students hospital doctors patients
health vaccine outbreak climate emissions energy power grid pipeline oil gas
prices drought flood storm wildfire earthquake rescue residents families
housing rent city region province capital airport railway port shipping
freight airline passengers traffic road bridge project contract plan
proposal law bill reform policy regulation rules agency regulator watchdog
court ruling appeal verdict trial charges suspects network fraud scandal
protest rally crowd demonstrators security military army navy defence
ministry alliance conflict ceasefire aid refugees charity volunteers
festival museum exhibition film music award season team match league coach
fans stadium record technology software platform users privacy network
satellite launch mission spacecraft startup funding factory jobs
unemployment pension retirement farmers harvest fisheries coast river lake
water supply infrastructure transport tourism visitors hotel weekend
morning evening statement spokesperson interview documents figures
quarter year month week decade century history""".split()

VERBS = """announced said warned approved rejected confirmed denied launched
opened closed cut raised lowered reported revealed signed agreed proposed
delayed postponed cancelled criticised defended welcomed questioned reviewed
expanded reduced increased boosted halted resumed won lost faced urged
called demanded promised pledged unveiled published released described
estimated expected predicted challenged investigated suspended restored
completed began ended extended blocked backed supported opposed""".split()

ADJECTIVES = """new major local national regional international global
economic political financial public private federal senior former final
annual monthly weekly record strong weak rising falling higher lower early
late sudden unexpected controversial landmark historic long-awaited urgent
key leading critical broad narrow joint independent official unofficial
cautious optimistic fragile stable volatile modest significant surprising
rural urban coastal northern southern eastern western central""".split()

FILLERS = """the the the a an this that its their our after before during
while despite amid following ahead of over under between across within
against without about around near""".split()

# Place names, with plenty of Latin-1 letters (é ü ö ø å ó ã ç î ...) and a
# few characters outside Latin-1 (ł ń ř ő) for the UTF-8 feeds.
PLACES = """London Paris Berlin Madrid Rome Vienna Brussels Amsterdam Lisbon
Dublin Oslo Stockholm Helsinki Copenhagen Warsaw Prague Budapest Athens
Zürich München Genève Düsseldorf Köln Málaga Córdoba Kraków Göteborg Malmö
Tromsø Ålesund Reykjavík Besançon Nîmes Orléans Lübeck Würzburg São_Paulo
Brasília Bogotá Asunción Montréal Québec Curaçao Åland Łódź Poznań Brno
Plzeň Győr Chicago Toronto Sydney Nairobi Lagos Cairo Mumbai Singapore
Tokyo Seoul Manila Jakarta""".split()
PLACES = [p.replace("_", " ") for p in PLACES]

PEOPLE = """Müller Lefèvre García Hernández Jørgensen Björk François Zoë
Søren Ångström Núñez Gonçalves Dvořák Wałęsa Schröder Fernández Okafor
Nakamura Kowalski Rossi Dubois Novák Smith Johnson Patel Kim Andersen
Larsen Petrović Ólafsson Bélanger Kühn""".split()

AGENCIES = ["Wire", "NewsWire", "Presswire", "Global Desk", "Newsdesk", "Dispatch"]

CATEGORIES = """Politics Economy Business World Europe Local Science Health
Technology Environment Sport Culture Transport Energy Justice Education
Opinion Weather""".split()

# Topic stories: a themed vocabulary plus the exact phrases. None of these
# words may end in "border" or start with "security"/"smuggling"/"trafficking".
TOPIC_WORDS = """patrol checkpoint customs coastguard asylum visa frontier
crossing smugglers traffickers detention interception surveillance
identity passports vessels crackdown operation network victims""".split()
TOPIC_CATEGORIES = ["Border security", "Migration", "Justice"]

# Decoys: near misses that a correct phrase query must NOT match.
DECOYS = ["drug trafficking", "cigarette smuggling", "human rights",
          "migrant workers", "cross-border trade", "data security",
          "security council", "border crossing delays"]

# Junk a sanitiser must strip, by kind (weights).
ACTIVE_CONTENT = [
    ("script", 6,
     '<script>var _tq=window._tq||[];_tq.push(["track","{id}"]);'
     'document.write("<img src=\\"https://pixel.tracker.example/p.gif?i={id}\\">");</script>'),
    ("script_src", 3,
     '<script async src="https://ads.adnetwork.example/loader.js?site={site}"></script>'),
    ("onerror", 1,
     '<img src="/media/broken-{id}.jpg" onerror="alert(document.cookie)" alt="">'),
    ("javascript_url", 1,
     '<p><a href="javascript:void(share(\'{id}\'))" onclick="share(this)">Share this story</a></p>'),
    ("iframe", 2,
     '<iframe src="https://video.example/embed/{id}" width="560" height="315" '
     'frameborder="0" allowfullscreen></iframe>'),
    ("form", 1,
     '<form action="https://{site}/newsletter" method="post"><input type="email" '
     'name="email" placeholder="Your e-mail"><button type="submit">Subscribe</button></form>'),
    ("style", 1,
     '<p style="position:fixed;top:0;left:0;width:100%;height:100%;z-index:9999;'
     'background:#fff">Advertisement</p>'),
]

SITE_A = """north south east west harbour valley river coast city county
metro capital island mountain lake bay central union daily evening morning
weekly civic market pioneer citizen""".split()
SITE_B = """herald courier gazette times post tribune chronicle observer
journal express record sentinel dispatch standard mirror review monitor
bulletin telegraph examiner ledger independent news wire""".split()

# Time zones a feed may use for its dates (hours offset from UTC).
TZ_OFFSETS = [0, 0, 0, 1, 2, -5, -4, -8, 5.5, 9, 10]


# --------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------
# A body is a list of blocks. A block is one of
#   ("p", [sentence, ...])          a paragraph; a sentence is a list of tokens
#   ("img", src, alt, relative)      an image
#   ("raw", html)                   active-content junk, kept verbatim
# A token is one of
#   ("w", word)                     a replaceable vocabulary word
#   ("f", text)                     fixed text (phrases, names, numbers)
#   ("a", href, text, relative)     a link
#   ("em", word) / ("strong", word) emphasised word
# Keeping the structure (rather than HTML) lets a near-duplicate change a few
# words without touching topic phrases, links or markup.


@dataclass
class Story:
    """One original story, as written by its first publisher."""
    sid: int                 # global story number
    feed_index: int          # feed that published it first (0-based)
    site: str                # host of the publisher, e.g. www.northherald.example
    slug: str
    link: str | None         # None for RSS 2.0 items without link and guid
    title: list[tuple]       # tokens, rendered to plain text
    body: list[tuple]        # blocks
    date: datetime
    author: str
    categories: list[str]
    topic: bool = False
    active: str | None = None    # kind of active content included, if any


@dataclass
class Item:
    """An item as it appears in one feed (an original or a near-duplicate)."""
    story: Story
    title: str
    html: str                # the body as HTML
    link: str | None
    date: datetime
    serial: int              # per-feed number, used for opaque ids
    dup: bool = False        # a syndicated near-duplicate of story
    has_guid: bool = True


@dataclass
class FeedPlan:
    index: int
    fid: str
    fmt: str                 # rss2 | atom | rss1 | json
    encoding: str            # utf-8 | iso-8859-1
    site: str
    title: str
    tz: timezone
    id_style: str            # how ids/guids look in this feed
    style: dict = field(default_factory=dict)   # presentation choices
    items: list[Item] = field(default_factory=list)


# --------------------------------------------------------------------------
# Text generation
# --------------------------------------------------------------------------
def cap(word: str) -> str:
    return word[:1].upper() + word[1:]


def sentence_tokens(rng: random.Random, nwords: int, topic: bool) -> list[tuple]:
    """A news-like sentence of roughly nwords words, as tokens."""
    toks: list[tuple] = []
    pool = NOUNS + VERBS + ADJECTIVES + FILLERS + FILLERS
    if topic:
        pool = pool + TOPIC_WORDS * 3
    while len(toks) < nwords:
        r = rng.random()
        if r < 0.06:
            toks.append(("f", rng.choice(PLACES)))
        elif r < 0.09:
            toks.append(("f", rng.choice(PEOPLE)))
        elif r < 0.12:
            toks.append(("f", number_phrase(rng)))
        elif r < 0.14:
            toks.append((rng.choice(["em", "strong"]), rng.choice(NOUNS)))
        else:
            toks.append(("w", rng.choice(pool)))
    # Don't end on "the", "of", ... (titles and sentences read less oddly).
    while len(toks) > 3 and toks[-1][0] == "w" and toks[-1][1] in FILLERS:
        toks.pop()
    # Occasional typographic quotes, an ampersand, an em dash: text that must
    # survive HTML-entity and XML escaping and the Latin-1 encoding.
    r = rng.random()
    if r < 0.08:
        toks.insert(rng.randrange(1, len(toks)), ("f", "\u2014"))
    elif r < 0.14:
        toks.append(("f", f"\u201c{rng.choice(NOUNS)}\u201d"))
    elif r < 0.18:
        toks.insert(rng.randrange(1, len(toks)), ("f", f"{cap(rng.choice(NOUNS))} &amp; {cap(rng.choice(NOUNS))}"))
    elif r < 0.21:
        toks.append(("f", f"the minister\u2019s {rng.choice(NOUNS)}"))
    return toks


def number_phrase(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.3:
        return f"{rng.randint(2, 99)} percent"
    if r < 0.5:
        return f"\u20ac{rng.randint(1, 900)} million"
    if r < 0.7:
        return f"${rng.randint(1, 90)}.{rng.randint(0, 9)} billion"
    if r < 0.85:
        return f"{rng.randint(2, 5000):,}"
    return f"in {rng.randint(1990, 2025)}"


def insert_at(rng: random.Random, toks: list[tuple], text: str) -> None:
    """Insert fixed text at a random position inside a sentence."""
    toks.insert(rng.randrange(0, len(toks) + 1), ("f", text))


def make_title(rng: random.Random, topic: bool) -> list[tuple]:
    toks = sentence_tokens(rng, rng.randint(5, 11), topic)
    toks = [t for t in toks if t[0] in ("w", "f")]  # no markup in titles
    if topic and rng.random() < 0.5:
        insert_at(rng, toks, rng.choice(TOPIC_PHRASES))
    return toks


def render_tokens(toks: list[tuple], base: str | None, html: bool) -> str:
    """Render tokens as HTML (html=True) or as plain title text."""
    out = []
    for t in toks:
        kind = t[0]
        if kind in ("w", "f"):
            out.append(t[1])
        elif kind in ("em", "strong"):
            out.append(f"<{kind}>{t[1]}</{kind}>" if html else t[1])
        elif kind == "a":
            _, href, text, relative = t
            if relative and base:
                href = base + href
            out.append(f'<a href="{href}">{text}</a>' if html else text)
    s = " ".join(out)
    return s[:1].upper() + s[1:]


def render_title(toks: list[tuple]) -> str:
    # Titles are plain text; "&amp;" in fixed tokens is HTML, so decode it.
    return render_tokens(toks, None, html=False).replace("&amp;", "&")


def render_body(blocks: list[tuple], base: str | None, dateline: str | None = None) -> str:
    """Render body blocks as HTML. base: absolutise relative URLs with it."""
    parts = []
    first_p = True
    for b in blocks:
        if b[0] == "p":
            text = " ".join(render_tokens(s, base, True) + "." for s in b[1])
            if first_p and dateline:
                text = dateline + text
            first_p = False
            parts.append(f"<p>{text}</p>")
        elif b[0] == "img":
            _, src, alt, relative = b
            if relative and base:
                src = base + src
            parts.append(f'<p><img src="{src}" alt="{alt}" width="640" height="360"></p>')
        elif b[0] == "raw":
            parts.append(b[1])
    return "\n".join(parts)


def make_body(rng: random.Random, story_id: str, site: str, topic: bool,
              active: str | None) -> list[tuple]:
    """Body blocks whose HTML is BODY_MIN..BODY_MAX bytes (UTF-8)."""
    target = int(rng.triangular(BODY_MIN, BODY_MAX - 100, BODY_MODE))
    blocks: list[tuple] = []
    if rng.random() < 0.35:              # a lead image, on the site or a CDN
        alt = f"{cap(rng.choice(NOUNS))} in {rng.choice(PLACES)}"
        if rng.random() < 0.5:
            blocks.append(("img", f"/media/{story_id}-lead.jpg", alt, True))
        else:
            cdn = f"https://cdn.{site.removeprefix('www.')}/img/{story_id}.jpg"
            blocks.append(("img", cdn, alt, False))

    def size() -> int:
        return len(render_body(blocks, None).encode("utf-8"))

    para: list[list[tuple]] = []
    blocks.append(("p", para))
    want = rng.randint(2, 5)
    while size() < target:
        if len(para) >= want:
            if rng.random() < 0.08:
                blocks.append(("img", f"/media/{story_id}-{len(blocks)}.jpg",
                               f"{cap(rng.choice(ADJECTIVES))} {rng.choice(NOUNS)}", True))
            para = []
            blocks.append(("p", para))
            want = rng.randint(1, 5)
        s = sentence_tokens(rng, rng.randint(8, 24), topic)
        if rng.random() < 0.12:
            s.append(make_link(rng, site))
        if not topic and rng.random() < 0.03:
            insert_at(rng, s, rng.choice(DECOYS))
        para.append(s)
    # Topic stories carry 1-3 occurrences of the phrases in their text; half
    # of all stories get one more link.
    paras = [b for b in blocks if b[0] == "p" and b[1]]
    if topic:
        for _ in range(rng.randint(1, 3)):
            s = rng.choice(rng.choice(paras)[1])
            insert_at(rng, s, rng.choice(TOPIC_PHRASES))
    if rng.random() < 0.5:
        s = rng.choice(rng.choice(paras)[1])
        s.append(make_link(rng, site))
    if active:
        junk = next(tpl for kind, _, tpl in ACTIVE_CONTENT if kind == active)
        html = junk.replace("{id}", story_id).replace("{site}", site)
        blocks.insert(rng.randrange(1, len(blocks) + 1), ("raw", html))
    # Junk and inserted phrases can push the body over; leave room for what
    # a syndicated copy adds (dateline, absolute links).
    trim(blocks, lambda: size() > BODY_MAX - 100)
    return blocks


def trim(blocks: list[tuple], too_big) -> None:
    """Drop trailing sentences (never a topic phrase's) while too_big()."""
    while too_big():
        paras = [b for b in blocks if b[0] == "p" and len(b[1]) > 1
                 and not any(t == ("f", p) for p in TOPIC_PHRASES for t in b[1][-1])]
        if not paras:
            break
        paras[-1][1].pop()


def make_link(rng: random.Random, site: str) -> tuple:
    """A link token: relative to the publisher's site, or absolute."""
    word = rng.choice(NOUNS)
    r = rng.random()
    if r < 0.45:
        return ("a", f"/topics/{word}", word, True)
    if r < 0.6:
        return ("a", f"/{rng.choice(CATEGORIES).lower()}/{rng.randint(1000, 99999)}", word, True)
    if r < 0.85:
        other = rng.choice(SITE_A) + rng.choice(SITE_B)
        return ("a", f"https://www.{other}.example/{word}/{rng.randint(10000, 999999)}", word, False)
    return ("a", f"https://www.search.example/find?q={word}&amp;page={rng.randint(1, 9)}", word, False)


def near_duplicate(rng: random.Random, story: Story) -> tuple[str, str]:
    """Headline and body HTML of a syndicated copy of story.

    The copy keeps the story text but: replaces 2-3 headline words and may
    add a prefix such as "UPDATE 1-"; starts with a dateline; changes 3-6
    body words; makes relative links absolute (the syndicator's own site
    would resolve them wrongly).
    """
    title = copy.deepcopy(story.title)
    words = [i for i, t in enumerate(title) if t[0] == "w"]
    for i in rng.sample(words, min(len(words), rng.randint(2, 3))):
        title[i] = ("w", rng.choice(NOUNS + VERBS + ADJECTIVES))
    head = render_title(title)
    r = rng.random()
    if r < 0.2:
        head = f"UPDATE {rng.randint(1, 3)}-{head}"
    elif r < 0.3:
        head = f"{head} \u2014 report"
    body = copy.deepcopy(story.body)
    slots = [(s, i) for b in body if b[0] == "p" for s in b[1]
             for i, t in enumerate(s) if t[0] == "w"]
    for s, i in rng.sample(slots, min(len(slots), rng.randint(3, 6))):
        old = s[i][1]
        s[i] = ("w", rng.choice([w for w in NOUNS + VERBS + ADJECTIVES if w != old]))
    place = story_place(story)
    dateline = f"{place.upper()} ({rng.choice(AGENCIES)}) - "
    base = "https://" + story.site
    trim(body, lambda: len(render_body(body, base, dateline).encode("utf-8")) > BODY_MAX)
    return head, render_body(body, base, dateline)


def story_place(story: Story) -> str:
    for b in story.body:
        if b[0] == "p":
            for s in b[1]:
                for t in s:
                    if t[0] == "f" and t[1] in PLACES:
                        return t[1]
    return PLACES[story.sid % len(PLACES)]


# --------------------------------------------------------------------------
# Planning: which feed has which format, encoding, items, duplicates
# --------------------------------------------------------------------------
def exact_shares(rng: random.Random, n: int, shares: list[tuple[str, float]]) -> list[str]:
    """n labels with the given shares (largest remainder), shuffled."""
    counts = [int(n * s) for _, s in shares]
    rema = sorted(range(len(shares)), key=lambda i: -(n * shares[i][1] - counts[i]))
    for i in rema[: n - sum(counts)]:
        counts[i] += 1
    labels = [name for (name, _), c in zip(shares, counts) for _ in range(c)]
    rng.shuffle(labels)
    return labels


def plan_feeds(rng: random.Random, nfeeds: int,
               shares: list[tuple[str, float]] = FORMAT_SHARES) -> list[FeedPlan]:
    fmts = exact_shares(rng, nfeeds, shares)
    xml_idx = [i for i, f in enumerate(fmts) if f != "json"]
    latin1 = set(rng.sample(xml_idx, round(len(xml_idx) * LATIN1_SHARE)))
    names = [a + b for a in SITE_A for b in SITE_B]
    rng.shuffle(names)
    width = max(5, len(str(nfeeds)))
    feeds = []
    for i, fmt in enumerate(fmts):
        name = names[i % len(names)] + (str(i // len(names)) if i >= len(names) else "")
        site = f"www.{name}.example"
        off = rng.choice(TZ_OFFSETS)
        tz = timezone(timedelta(hours=off))
        title = " ".join(cap(w) for w in name_split(name))
        if fmt == "rss2":
            id_style = "link" if rng.random() < RSS2_LINK_ONLY_FEEDS else \
                rng.choice(["permalink", "opaque", "uuid"])
        elif fmt == "atom":
            id_style = rng.choice(["tag", "uuid", "url"])
        elif fmt == "json":
            id_style = rng.choice(["url", "opaque"])
        else:
            id_style = "about"
        style = {
            # RSS 2.0: HTML in CDATA (common) or entity-escaped. Latin-1
            # feeds never use CDATA, because characters outside Latin-1 are
            # written as character references, which CDATA would not decode.
            "cdata": rng.random() < 0.5 and i not in latin1,
            # WordPress-like: short plain-text description + content:encoded.
            "content_encoded": rng.random() < 0.25,
            # Atom: summary only, content only, or both.
            "atom_body": rng.choice(["content", "content", "summary", "both"]),
            "gmt": rng.random() < 0.5,          # RFC 822 "GMT" instead of "+0000"
            "zulu": rng.random() < 0.6,         # RFC 3339 "Z" when offset is 0
            "indent": rng.random() < 0.5,       # JSON Feed pretty-printed
            "lang": "fr" if i in latin1 and rng.random() < 0.5 else "en",
        }
        feeds.append(FeedPlan(i, f"feed-{i + 1:0{width}d}", fmt,
                              "iso-8859-1" if i in latin1 else "utf-8",
                              site, title, tz, id_style, style))
    return feeds


def name_split(name: str) -> list[str]:
    for a in SITE_A:
        if name.startswith(a):
            return [a, name[len(a):]]
    return [name]


def plan_items(rng: random.Random, feeds: list[FeedPlan], nitems: int,
               now: datetime) -> list[Story]:
    """Fill feeds with items (newest first); return the original stories."""
    nfeeds = len(feeds)
    slots = [(f, k) for f in range(nfeeds) for k in range(nitems)]
    ndup = round(len(slots) * NEAR_DUP_SHARE) if nfeeds > 1 else 0
    dup_slots = set(rng.sample(range(len(slots)), ndup))
    orig_slots = [s for j, s in enumerate(slots) if j not in dup_slots]
    ntopic = round(len(orig_slots) * TOPIC_SHARE)
    topic_slots = set(rng.sample(range(len(orig_slots)), ntopic))
    nactive = round(len(orig_slots) * ACTIVE_CONTENT_SHARE)
    active_slots = set(rng.sample(range(len(orig_slots)), nactive))
    kinds = [k for k, _, _ in ACTIVE_CONTENT]
    weights = [w for _, w, _ in ACTIVE_CONTENT]

    # Dates: each feed's items spread over the window, newest first.
    window = DAYS * 86400
    dates = {f: sorted((now - timedelta(seconds=rng.randrange(window)) for _ in range(nitems)),
                       reverse=True) for f in range(nfeeds)}

    stories: list[Story] = []
    by_slot: dict[tuple[int, int], Story] = {}
    for j, (f, k) in enumerate(orig_slots):
        feed = feeds[f]
        topic = j in topic_slots
        active = rng.choices(kinds, weights)[0] if j in active_slots else None
        sid = len(stories)
        title = make_title(rng, topic)
        slug = "-".join(t[1].lower() for t in title if t[0] == "w")[:60].strip("-") or "story"
        section = rng.choice(CATEGORIES).lower()
        d = dates[f][k]
        link = f"https://{feed.site}/{section}/{d:%Y/%m}/{slug}-{sid:06d}"
        if feed.fmt == "rss2" and rng.random() < RSS2_NO_ID_ITEMS:
            link = None
        cats = rng.sample(CATEGORIES, rng.randint(0, 3))
        if topic:
            cats = [rng.choice(TOPIC_CATEGORIES)] + cats[:1]
        story = Story(sid, f, feed.site, slug, link, title,
                      make_body(rng, f"{sid:06d}", feed.site, topic, active),
                      d, f"{rng.choice(PEOPLE)}", cats, topic, active)
        stories.append(story)
        by_slot[(f, k)] = story

    # Near-duplicates: copy a story with a link from another feed; one feed
    # never carries two copies of the same story.
    linked = [s for s in stories if s.link]
    used: set[tuple[int, int]] = set()
    items_of: dict[tuple[int, int], Item] = {}
    for j, (f, k) in enumerate(slots):
        feed = feeds[f]
        if j in dup_slots:
            while True:
                src = rng.choice(linked)
                if src.feed_index != f and (f, src.sid) not in used:
                    break
            used.add((f, src.sid))
            head, html = near_duplicate(rng, src)
            utm = f"utm_source={feed.site.split('.')[1]}&utm_medium=rss&utm_campaign=syndication"
            date = min(now, src.date + timedelta(minutes=rng.randint(5, 720)))
            items_of[(f, k)] = Item(src, head, html, f"{src.link}?{utm}", date, k + 1, dup=True)
        else:
            s = by_slot[(f, k)]
            items_of[(f, k)] = Item(s, render_title(s.title),
                                    render_body(s.body, None), s.link, s.date, k + 1)
    for f, feed in enumerate(feeds):
        feed.items = [items_of[(f, k)] for k in range(nitems)]
        # Syndicated copies keep their own (later) dates: re-sort newest first.
        feed.items.sort(key=lambda it: it.date, reverse=True)
        for it in feed.items:
            it.has_guid = feed.fmt != "rss2" or (feed.id_style != "link" and it.link is not None)
    return stories


def dup_pairs(feeds: list[FeedPlan]) -> list[dict]:
    """Each syndicated copy and its original, as (feed id, position in file)."""
    where = {}
    for f in feeds:
        for p, it in enumerate(f.items):
            if not it.dup:
                where[it.story.sid] = (f.fid, p)
    return [{"feed": f.fid, "index": p, "of_feed": where[it.story.sid][0],
             "of_index": where[it.story.sid][1]}
            for f in feeds for p, it in enumerate(f.items) if it.dup]


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------
def xesc(s: str) -> str:
    """Escape text for XML character data."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xattr(s: str) -> str:
    return xesc(s).replace('"', "&quot;")


def html_block(html: str, cdata: bool) -> str:
    """HTML as XML text: in a CDATA section or entity-escaped."""
    if cdata and "]]>" not in html:
        return f"<![CDATA[{html}]]>"
    return xesc(html)


def rfc822(d: datetime, feed: FeedPlan) -> str:
    d = d.astimezone(feed.tz)
    if feed.tz.utcoffset(None) == timedelta(0) and feed.style["gmt"]:
        return format_datetime(d, usegmt=True)
    return format_datetime(d)


def rfc3339(d: datetime, feed: FeedPlan) -> str:
    d = d.astimezone(feed.tz)
    s = d.isoformat(timespec="seconds")
    if feed.style["zulu"] and s.endswith("+00:00"):
        s = s[:-6] + "Z"
    return s


def plain_excerpt(html: str, n: int = 240) -> str:
    """A short plain-text excerpt of the first paragraph (for summaries)."""
    text = re.sub(r"<[^>]+>", "", html.split("</p>", 1)[0])
    text = text.replace("&amp;", "&")
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0] + "\u2026"


def item_id(feed: FeedPlan, it: Item, rng: random.Random) -> str:
    style = feed.id_style
    if style in ("permalink", "url", "about") and it.link:
        return it.link
    if style == "opaque":
        return f"{feed.site.split('.')[1]}-{it.serial:05d}"
    if style == "tag":
        return f"tag:{feed.site},{it.date:%Y-%m-%d}:/story/{it.serial}"
    return uuid.UUID(int=rng.getrandbits(128), version=4).urn


def prolog(feed: FeedPlan) -> str:
    enc = "ISO-8859-1" if feed.encoding == "iso-8859-1" else "UTF-8"
    return f'<?xml version="1.0" encoding="{enc}"?>\n'


def render_rss2(feed: FeedPlan, now: datetime, rng: random.Random) -> str:
    st = feed.style
    out = [prolog(feed),
           '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"'
           ' xmlns:content="http://purl.org/rss/1.0/modules/content/"'
           ' xmlns:dc="http://purl.org/dc/elements/1.1/">\n<channel>\n',
           f"<title>{xesc(feed.title)}</title>\n",
           f"<link>https://{feed.site}/</link>\n",
           f"<description>{xesc(channel_description(feed))}</description>\n",
           f"<language>{st['lang']}</language>\n",
           f'<atom:link href="https://{feed.site}/rss" rel="self" type="application/rss+xml"/>\n',
           f"<lastBuildDate>{rfc822(now, feed)}</lastBuildDate>\n",
           "<generator>feedsieve-bench</generator>\n<ttl>30</ttl>\n"]
    for it in feed.items:
        out.append("<item>\n")
        out.append(f"<title>{xesc(it.title)}</title>\n")
        if it.link:
            out.append(f"<link>{xesc(it.link)}</link>\n")
        if it.has_guid:
            gid = item_id(feed, it, rng)
            if feed.id_style == "permalink":
                out.append(f"<guid>{xesc(gid)}</guid>\n")
            else:
                out.append(f'<guid isPermaLink="false">{xesc(gid)}</guid>\n')
        out.append(f"<pubDate>{rfc822(it.date, feed)}</pubDate>\n")
        out.append(f"<dc:creator>{xesc(it.story.author)}</dc:creator>\n")
        for c in it.story.categories:
            out.append(f"<category>{xesc(c)}</category>\n")
        if st["content_encoded"]:
            out.append(f"<description>{xesc(plain_excerpt(it.html))}</description>\n")
            out.append(f"<content:encoded>{html_block(it.html, st['cdata'])}</content:encoded>\n")
        else:
            out.append(f"<description>{html_block(it.html, st['cdata'])}</description>\n")
        out.append("</item>\n")
    out.append("</channel>\n</rss>\n")
    return "".join(out)


def render_atom(feed: FeedPlan, now: datetime, rng: random.Random) -> str:
    st = feed.style
    updated = max((it.date for it in feed.items), default=now)
    out = [prolog(feed),
           f'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="{st["lang"]}">\n',
           f"<title>{xesc(feed.title)}</title>\n",
           f"<subtitle>{xesc(channel_description(feed))}</subtitle>\n",
           f"<id>tag:{feed.site},2020:/feed</id>\n",
           f'<link rel="alternate" type="text/html" href="https://{feed.site}/"/>\n',
           f'<link rel="self" type="application/atom+xml" href="https://{feed.site}/atom.xml"/>\n',
           f"<updated>{rfc3339(updated, feed)}</updated>\n",
           "<generator>feedsieve-bench</generator>\n"]
    for it in feed.items:
        out.append("<entry>\n")
        out.append(f"<title>{xesc(it.title)}</title>\n")
        out.append(f'<link rel="alternate" type="text/html" href="{xattr(it.link)}"/>\n')
        out.append(f"<id>{xesc(item_id(feed, it, rng))}</id>\n")
        out.append(f"<published>{rfc3339(it.date, feed)}</published>\n")
        out.append(f"<updated>{rfc3339(it.date, feed)}</updated>\n")
        out.append(f"<author><name>{xesc(it.story.author)}</name></author>\n")
        for c in it.story.categories:
            out.append(f'<category term="{xattr(c)}"/>\n')
        body = st["atom_body"]
        if body == "summary":
            out.append(f'<summary type="html">{xesc(it.html)}</summary>\n')
        else:
            if body == "both":
                out.append(f"<summary>{xesc(plain_excerpt(it.html))}</summary>\n")
            out.append(f'<content type="html">{xesc(it.html)}</content>\n')
        out.append("</entry>\n")
    out.append("</feed>\n")
    return "".join(out)


def render_rss1(feed: FeedPlan, now: datetime, rng: random.Random) -> str:
    st = feed.style
    out = [prolog(feed),
           '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
           ' xmlns="http://purl.org/rss/1.0/"'
           ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
           ' xmlns:content="http://purl.org/rss/1.0/modules/content/">\n',
           f'<channel rdf:about="https://{feed.site}/index.rdf">\n',
           f"<title>{xesc(feed.title)}</title>\n",
           f"<link>https://{feed.site}/</link>\n",
           f"<description>{xesc(channel_description(feed))}</description>\n",
           f"<dc:language>{st['lang']}</dc:language>\n",
           f"<dc:date>{rfc3339(now, feed)}</dc:date>\n",
           "<items>\n<rdf:Seq>\n"]
    for it in feed.items:
        out.append(f'<rdf:li rdf:resource="{xattr(it.link)}"/>\n')
    out.append("</rdf:Seq>\n</items>\n</channel>\n")
    for it in feed.items:
        out.append(f'<item rdf:about="{xattr(it.link)}">\n')
        out.append(f"<title>{xesc(it.title)}</title>\n")
        out.append(f"<link>{xesc(it.link)}</link>\n")
        if st["content_encoded"]:
            out.append(f"<description>{xesc(plain_excerpt(it.html))}</description>\n")
            out.append(f"<content:encoded>{html_block(it.html, st['cdata'])}</content:encoded>\n")
        else:
            out.append(f"<description>{xesc(it.html)}</description>\n")
        out.append(f"<dc:date>{rfc3339(it.date, feed)}</dc:date>\n")
        out.append(f"<dc:creator>{xesc(it.story.author)}</dc:creator>\n")
        for c in it.story.categories:
            out.append(f"<dc:subject>{xesc(c)}</dc:subject>\n")
        out.append("</item>\n")
    out.append("</rdf:RDF>\n")
    return "".join(out)


def render_json(feed: FeedPlan, now: datetime, rng: random.Random) -> str:
    items = []
    for it in feed.items:
        obj = {"id": item_id(feed, it, rng), "url": it.link, "title": it.title,
               "content_html": it.html}
        if rng.random() < 0.3:
            obj["summary"] = plain_excerpt(it.html)
        obj["date_published"] = rfc3339(it.date, feed)
        obj["authors"] = [{"name": it.story.author}]
        if it.story.categories:
            obj["tags"] = it.story.categories
        items.append(obj)
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": feed.title,
           "home_page_url": f"https://{feed.site}/",
           "feed_url": f"https://{feed.site}/feed.json",
           "description": channel_description(feed),
           "language": feed.style["lang"], "items": items}
    return json.dumps(doc, ensure_ascii=False, indent=2 if feed.style["indent"] else None) + "\n"


def channel_description(feed: FeedPlan) -> str:
    if feed.style["lang"] == "fr":
        return f"Actualités et dépêches \u2014 {feed.title}, Genève"
    return f"Latest news from {feed.title} \u2014 politics, economy and more"


RENDER = {"rss2": render_rss2, "atom": render_atom, "rss1": render_rss1, "json": render_json}
EXT = {"rss2": "xml", "atom": "xml", "rss1": "xml", "json": "json"}


def encode(feed: FeedPlan, text: str) -> bytes:
    if feed.encoding == "iso-8859-1":
        # Characters outside Latin-1 become character references; CDATA is
        # never used in these feeds (see plan_feeds), so that is valid XML.
        return text.encode("iso-8859-1", "xmlcharrefreplace")
    return text.encode("utf-8")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------
def parse_now(s: str | None) -> datetime:
    if s is None:
        t = datetime.now(timezone.utc)
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Generate a deterministic benchmark feed corpus for feedsieve.",
        epilog="Writes DIR/feed-NNNNN.xml|json, DIR/feeds.tsv and DIR/manifest.json.")
    ap.add_argument("--feeds", type=int, default=1000, metavar="N", help="number of feeds (default 1000)")
    ap.add_argument("--items", type=int, default=20, metavar="M", help="items per feed (default 20)")
    ap.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--now", metavar="ISO8601",
                    help="reference time; dates fall in the 60 days before it "
                         "(default: start of the current UTC day)")
    ap.add_argument("--formats", default=",".join(f for f, _ in FORMAT_SHARES), metavar="LIST",
                    help="comma-separated subset of rss2,atom,rss1,json; their shares are "
                         "scaled to add up to 1 (default: all four). Comparisons with "
                         "readers that have no JSON Feed support use rss2,atom,rss1")
    ap.add_argument("--quiet", action="store_true", help="no summary on stderr")
    args = ap.parse_args(argv)
    if args.feeds < 1 or args.items < 1:
        ap.error("--feeds and --items must be at least 1")
    wanted = [f.strip() for f in args.formats.split(",") if f.strip()]
    known = [f for f, _ in FORMAT_SHARES]
    if not wanted or any(f not in known for f in wanted):
        ap.error(f"--formats: choose from {','.join(known)}")
    total = sum(s for f, s in FORMAT_SHARES if f in wanted)
    # All four: the table as written, so default corpora stay byte-identical.
    shares = FORMAT_SHARES if len(wanted) == len(known) else \
        [(f, s / total) for f, s in FORMAT_SHARES if f in wanted]

    now = parse_now(args.now)
    rng = random.Random(args.seed)
    feeds = plan_feeds(rng, args.feeds, shares)
    stories = plan_items(rng, feeds, args.items, now)
    pairs = dup_pairs(feeds)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("feed-*.xml")) + list(out.glob("feed-*.json")):
        old.unlink()                     # a previous, larger corpus
    total_bytes = 0
    by_format: dict[str, dict] = {f: {"feeds": 0, "items": 0, "bytes": 0} for f, _ in FORMAT_SHARES}
    tsv = ["id\tpath"]
    for feed in feeds:
        data = encode(feed, RENDER[feed.fmt](feed, now, rng))
        name = f"{feed.fid}.{EXT[feed.fmt]}"
        (out / name).write_bytes(data)
        tsv.append(f"{feed.fid}\t{name}")
        total_bytes += len(data)
        bf = by_format[feed.fmt]
        bf["feeds"] += 1
        bf["items"] += len(feed.items)
        bf["bytes"] += len(data)
    (out / "feeds.tsv").write_text("\n".join(tsv) + "\n", encoding="utf-8")

    all_items = [it for f in feeds for it in f.items]
    nitems = len(all_items)
    topic_items = sum(1 for it in all_items if it.story.topic)
    body_sizes = [len(it.html.encode("utf-8")) for it in all_items]
    active: dict[str, int] = {}
    for s in stories:
        if s.active:
            active[s.active] = active.get(s.active, 0) + 1
    manifest = {
        "generator": GENERATOR,
        "seed": args.seed,
        "formats": wanted,
        "now": now.isoformat(),
        "feeds": len(feeds),
        "items": nitems,
        "bytes": total_bytes,
        "bytes_per_item": round(total_bytes / nitems, 1),
        "unique_stories": len(stories),
        "near_duplicate_items": len(pairs),
        "by_format": by_format,
        "latin1_feeds": sum(1 for f in feeds if f.encoding == "iso-8859-1"),
        "items_with_guid_or_id": sum(1 for it in all_items if it.has_guid),
        "rss2_items_link_only": sum(1 for f in feeds if f.fmt == "rss2"
                                    for it in f.items if it.link and not it.has_guid),
        "rss2_items_without_guid_or_link": sum(1 for it in all_items if not it.link),
        "body_html_bytes": {"min": min(body_sizes), "max": max(body_sizes),
                            "mean": round(sum(body_sizes) / nitems, 1)},
        "stories_with_active_content": dict(sorted(active.items())),
        "date_range_days": DAYS,
        "topic": {
            "id": TOPIC_ID,
            "query": TOPIC_QUERY,
            "matching_items": topic_items,
            "matching_stories": sum(1 for s in stories if s.topic),
        },
        # Each syndicated copy and the original it was made from; "index"
        # is the item's position in its file (0 = first item).
        "near_duplicate_pairs": pairs,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    if not args.quiet:
        print(f"{len(feeds)} feeds, {nitems} items, {total_bytes / 1e6:.1f} MB "
              f"({total_bytes / nitems:.0f} B/item), {len(stories)} stories, "
              f"{len(pairs)} near-duplicates, {topic_items} topic items -> {out}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
