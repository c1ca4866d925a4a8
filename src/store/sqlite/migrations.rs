//! The SQLite schema, as the list of steps that build it.
//!
//! Rules of the list: never change or remove a step; append one to change the schema.
//! The index of a step (counting from 1) is the schema version it makes, kept in
//! `PRAGMA user_version`; each step runs in its own transaction with the version
//! update.

/// The schema version whose upgrade writes every item's near-duplicate search keys
/// again (`bands::rekey`).
pub const BANDS_REKEYED: i64 = 11;

/// Append-only: each entry upgrades the schema by one version (`PRAGMA user_version`).
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE feeds (
    id            TEXT PRIMARY KEY,
    url           TEXT NOT NULL,
    title         TEXT,
    site_link     TEXT,
    etag          TEXT,
    last_modified TEXT,
    last_fetch    INTEGER,
    last_success  INTEGER,
    last_status   INTEGER,
    error         TEXT,
    failures      INTEGER NOT NULL DEFAULT 0,
    next_due      INTEGER,
    moved_to      TEXT
) STRICT;

CREATE TABLE stories (
    id         INTEGER PRIMARY KEY,
    first_seen INTEGER NOT NULL
) STRICT;

CREATE TABLE items (
    id             INTEGER PRIMARY KEY,
    feed_id        TEXT NOT NULL REFERENCES feeds(id),
    key            TEXT NOT NULL,
    guid           TEXT,
    link           TEXT,
    canonical_link TEXT,
    title          TEXT NOT NULL,
    summary        TEXT,
    content        TEXT,
    authors        TEXT NOT NULL,
    categories     TEXT NOT NULL,
    published      INTEGER,
    updated        INTEGER,
    first_seen     INTEGER NOT NULL,
    changed_at     INTEGER NOT NULL,
    content_hash   BLOB NOT NULL,
    story_id       INTEGER NOT NULL REFERENCES stories(id),
    UNIQUE (feed_id, key)
) STRICT;
CREATE INDEX items_canonical_link ON items(canonical_link) WHERE canonical_link IS NOT NULL;
CREATE INDEX items_story ON items(story_id);

CREATE VIRTUAL TABLE items_fts USING fts5(
    title, summary, content, categories,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TABLE pending (item_id INTEGER PRIMARY KEY) STRICT;

CREATE TABLE topics (
    id         TEXT PRIMARY KEY,
    signature  TEXT NOT NULL,
    changed_at INTEGER NOT NULL
) STRICT;

CREATE TABLE topic_stories (
    topic_id   TEXT NOT NULL,
    story_id   INTEGER NOT NULL,
    item_id    INTEGER NOT NULL,
    score      REAL NOT NULL,
    sort_date  INTEGER NOT NULL,
    matched_at INTEGER NOT NULL,
    PRIMARY KEY (topic_id, story_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX topic_stories_by_date ON topic_stories(topic_id, sort_date DESC);
CREATE INDEX topic_stories_item ON topic_stories(item_id);

CREATE TABLE tombstones (
    feed_id   TEXT NOT NULL,
    key       TEXT NOT NULL,
    pruned_at INTEGER NOT NULL,
    PRIMARY KEY (feed_id, key)
) STRICT, WITHOUT ROWID;
"#,
    r#"
-- Near-duplicate stories: a fingerprint per item, LSH band keys of the items inside
-- the comparison window (ids grow with first_seen, so the window is an id range),
-- and each feed's boilerplate sentences.
ALTER TABLE items ADD COLUMN fingerprint BLOB;
CREATE TABLE item_bands (
    key     INTEGER NOT NULL,
    item_id INTEGER NOT NULL,
    PRIMARY KEY (key, item_id)
) STRICT, WITHOUT ROWID;
CREATE TABLE feed_boilerplate (
    feed_id TEXT NOT NULL,
    hash    INTEGER NOT NULL,
    PRIMARY KEY (feed_id, hash)
) STRICT, WITHOUT ROWID;
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
"#,
    r#"
-- Merge full-text segments less eagerly on insert (16 segments per level instead of
-- 4): a poll commits a few items at a time, and eager merging made each commit's cost
-- grow with the index. Maintenance merges in bulk instead (see Store::prune).
INSERT INTO items_fts (items_fts, rank) VALUES ('automerge', 16);
"#,
    r#"
-- HTML is sanitised when it is first published, not when it is stored: most items
-- are never in a topic. `sanitized` = 0 marks summary and content still as the feed
-- sent them (control characters removed, sizes capped); `base` is what relative URLs
-- in them resolve against. Rows stored before this were sanitised already.
ALTER TABLE items ADD COLUMN base TEXT;
ALTER TABLE items ADD COLUMN sanitized INTEGER NOT NULL DEFAULT 1;
"#,
    r#"
-- The full-text index keeps no copy of the text it indexes: that copy was a third of
-- the database and of what each commit wrote. Items keep their markup, and
-- `topic preview` extracts the text again for the few rows it highlights. Deleting
-- rows from an index without content needs `contentless_delete` (SQLite 3.43).
CREATE VIRTUAL TABLE items_fts_new USING fts5(
    title, summary, content, categories,
    tokenize = 'unicode61 remove_diacritics 2', content = '', contentless_delete = 1
);
INSERT INTO items_fts_new (rowid, title, summary, content, categories)
    SELECT rowid, title, summary, content, categories FROM items_fts;
DROP TABLE items_fts;
ALTER TABLE items_fts_new RENAME TO items_fts;
INSERT INTO items_fts (items_fts, rank) VALUES ('automerge', 16);
"#,
    r#"
-- What topic matching reads of each matching item, so it reads this index and not the
-- row: a row's later columns sit behind its summary and content, most often in
-- overflow pages (8,221 matches over 1M items: 60 % of the time was copying them).
CREATE INDEX items_match ON items(id, story_id, first_seen, published, feed_id);
"#,
    r#"
-- Content hashes are XXH3-128 from here on (dedup::content_hash); the items stored
-- before keep their SHA-256 ones, and a hash that differs is checked against the old
-- function too (dedup::legacy_content_hash) before the item counts as changed.
INSERT INTO meta (key, value) SELECT 'legacy_hashes_below', coalesce(max(id), 0) + 1 FROM items;
"#,
    r#"
-- The RSS <ttl> of a feed's last 200, in minutes: it still holds after a 304.
ALTER TABLE feeds ADD COLUMN ttl_minutes INTEGER;
"#,
    r#"
-- full_text: an item whose content is its own page's main text (1), which a
-- correction from the feed keeps; and each feed's article failures in its last poll.
ALTER TABLE items ADD COLUMN article INTEGER NOT NULL DEFAULT 0;
ALTER TABLE feeds ADD COLUMN article_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE feeds ADD COLUMN article_error TEXT;
"#,
    r#"
-- WebSub. As a hub: each subscriber of a topic feed, and the version owed to it.
CREATE TABLE websub_subscriptions (
    topic         TEXT NOT NULL,
    format        TEXT NOT NULL,
    callback      TEXT NOT NULL,
    secret        TEXT,
    expires_at    INTEGER NOT NULL,
    etag          TEXT,
    delivered     TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  INTEGER,
    claimed_until INTEGER,
    error         TEXT,
    PRIMARY KEY (topic, format, callback)
);
-- As a subscriber: each source feed's subscription at the hub it advertises.
CREATE TABLE websub_sources (
    feed_id      TEXT PRIMARY KEY,
    hub          TEXT NOT NULL,
    topic        TEXT NOT NULL,
    secret       TEXT NOT NULL,
    state        TEXT NOT NULL,
    lease_until  INTEGER,
    requested_at INTEGER NOT NULL,
    error        TEXT
);
"#,
    r#"
-- Stories, fingerprints of the second format: the whole text's signature is cut into
-- 10 bands of 2 rows (it was 8 of 4), so the near-duplicate search keys of every item
-- change. The items that have keys are listed and their keys dropped; the upgrade then
-- writes them again from the stored fingerprints in this same transaction
-- (`bands::rekey`, run after this step).
CREATE TEMP TABLE rekey AS SELECT DISTINCT item_id FROM item_bands;
DELETE FROM item_bands;
INSERT INTO meta (key, value) VALUES ('band_flushes', 1)
    ON CONFLICT (key) DO UPDATE SET value = value + 1;
"#,
];
