//! Compares readability-style article extractors on the hand-written article pages in
//! tests/fixtures/articles (see manifest.toml there and bench/EXTRACT.md).
//!
//! Usage: `cargo run --release -- [MANIFEST] [--reps N] [--only NAME] [--dump DIR] [--check] [-v]`
//! or `cargo run --release -- --stress`
//!
//! * MANIFEST defaults to ../../tests/fixtures/articles/manifest.toml, relative to this project.
//! * `--check` only validates the manifest: every phrase must be in its page's visible text, once.
//! * `--dump DIR` writes each candidate's output to DIR/<candidate>/<page>.out.html, and as the
//!   plain text that is scored to DIR/<candidate>/<page>.txt.
//! * `-v` lists, per candidate and page, the phrases missed and leaked.
//! * `--stress` runs each candidate on synthetic hostile pages (deep nesting, 4 MB, 50,000
//!   links), each in a child process, and reports time, errors and crashes.
//!
//! Every candidate gets the same input: the page's bytes decoded to a `String` by the harness
//! (BOM, else `<meta charset>` / `http-equiv` in the first 1024 bytes, else UTF-8), and the URL
//! `https://news.example.org/<file>`. Every candidate's HTML output goes through the same
//! HTML-to-text conversion (`html_to_text`), so that no crate is judged by its own text mode.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use scraper::{Html, Node};
use serde::Deserialize;

#[derive(Deserialize)]
struct Manifest {
    page: Vec<Page>,
}

#[derive(Deserialize)]
struct Page {
    file: String,
    shape: String,
    must: Vec<String>,
    must_not: Vec<String>,
}

type Extract = fn(&str, &str) -> Result<String, String>;

struct Candidate {
    name: &'static str,
    version: &'static str,
    call: &'static str,
    run: Extract,
}

fn candidates() -> Vec<Candidate> {
    vec![
        Candidate {
            name: "dom_smoothie",
            version: "0.19.0",
            call: "Readability::new(html, Some(url), None)?.parse()?.content",
            run: |html, url| {
                let mut r =
                    dom_smoothie::Readability::new(html, Some(url), None).map_err(|e| e.to_string())?;
                Ok(r.parse().map_err(|e| e.to_string())?.content.to_string())
            },
        },
        Candidate {
            name: "dom_smoothie/ct250",
            version: "0.19.0",
            call: "same, with Config { char_threshold: 250 } (default 500)",
            run: |html, url| {
                let cfg = dom_smoothie::Config { char_threshold: 250, ..Default::default() };
                let mut r =
                    dom_smoothie::Readability::new(html, Some(url), Some(cfg)).map_err(|e| e.to_string())?;
                Ok(r.parse().map_err(|e| e.to_string())?.content.to_string())
            },
        },
        Candidate {
            name: "article_scraper",
            version: "3.0.2",
            call: "article_scraper::Readability::extract(html, Some(url)) (offline; no ftr site config)",
            run: |html, url| {
                let url = url::Url::parse(url).map_err(|e| e.to_string())?;
                article_scraper::Readability::extract(html, Some(url)).map_err(|e| e.to_string())
            },
        },
        Candidate {
            name: "legible",
            version: "0.5.1",
            call: "legible::parse(html, Some(url), None)?.content",
            run: |html, url| Ok(legible::parse(html, Some(url), None).map_err(|e| e.to_string())?.content),
        },
        Candidate {
            name: "legible/ct250",
            version: "0.5.1",
            call: "legible::parse(html, Some(url), Some(Options::new().char_threshold(250)))?.content",
            run: |html, url| {
                let opts = legible::Options::new().char_threshold(250);
                Ok(legible::parse(html, Some(url), Some(opts)).map_err(|e| e.to_string())?.content)
            },
        },
        Candidate {
            name: "readabilityrs",
            version: "0.1.4",
            call: "Readability::new(html, Some(url), None)?.parse()?.content",
            run: |html, url| {
                let r = readabilityrs::Readability::new(html, Some(url), None).map_err(|e| e.to_string())?;
                let article = r.parse().ok_or("parse() returned None (no article)")?;
                article.content.ok_or_else(|| "article without content".to_string())
            },
        },
        Candidate {
            name: "llm_readability",
            version: "0.0.17",
            call: "llm_readability::extractor::extract(&mut bytes, &url)?.content",
            run: |html, url| {
                let url = url::Url::parse(url).map_err(|e| e.to_string())?;
                let p = llm_readability::extractor::extract(&mut html.as_bytes(), &url)
                    .map_err(|e| format!("{e:?}"))?;
                Ok(p.content)
            },
        },
        Candidate {
            name: "readability",
            version: "0.3.0",
            call: "readability::extractor::extract(&mut bytes, &url)?.content (default features off: no reqwest)",
            run: |html, url| {
                let url = url::Url::parse(url).map_err(|e| e.to_string())?;
                let p = readability::extractor::extract(&mut html.as_bytes(), &url)
                    .map_err(|e| format!("{e:?}"))?;
                Ok(p.content)
            },
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Decoding and HTML to text

/// The page's bytes as text: BOM, else the charset a `<meta>` names in the first 1024 bytes,
/// else UTF-8 (what a browser would do without an HTTP header).
fn decode(bytes: &[u8]) -> (String, &'static str) {
    if let Some((enc, _)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _, _) = enc.decode(bytes);
        return (text.into_owned(), enc.name());
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_ascii_lowercase();
    let mut enc = encoding_rs::UTF_8;
    if let Some(i) = head.find("charset=") {
        let rest = head[i + 8..].trim_start_matches(['"', '\'']);
        let label: String =
            rest.chars().take_while(|c| c.is_ascii_alphanumeric() || "-_:.".contains(*c)).collect();
        if let Some(e) = encoding_rs::Encoding::for_label(label.as_bytes()) {
            enc = e;
        }
    }
    let (text, _, _) = enc.decode(bytes);
    (text.into_owned(), enc.name())
}

const INLINE: &[&str] = &[
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "del", "dfn", "em", "font", "i", "ins", "kbd",
    "mark", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "time", "tt", "u", "var",
    "wbr",
];
const SKIP: &[&str] = &["script", "style", "noscript", "template", "head", "title", "iframe", "svg"];

/// Visible text of an HTML document or fragment: text nodes in document order, a space at the
/// boundaries of elements that are not inline (and at `<br>`), whitespace runs made one space.
fn html_to_text(html: &str) -> String {
    let doc = Html::parse_document(html);
    let mut out = String::new();
    walk(doc.tree.root(), &mut out);
    normalise(&out)
}

fn walk(node: ego_tree::NodeRef<'_, Node>, out: &mut String) {
    for child in node.children() {
        match child.value() {
            Node::Text(t) => out.push_str(t),
            Node::Element(e) => {
                let name = e.name();
                if SKIP.contains(&name) {
                    continue;
                }
                let inline = INLINE.contains(&name);
                if !inline {
                    out.push(' ');
                }
                walk(child, out);
                if !inline {
                    out.push(' ');
                }
            }
            _ => walk(child, out),
        }
    }
}

/// Markup in an extractor's raw HTML output that a reader must not get as is: what ammonia
/// (or any sanitiser) has to remove. Each entry counts the pages whose output has it.
const HAZARDS: &[&str] = &[
    "<script>",
    "on* attribute",
    "javascript: URL",
    "<iframe>",
    "<form>/<input>",
    "<object>/<embed>",
    "<style>",
    "style attribute",
    "<svg>",
];

fn hazards(html: &str) -> [bool; 9] {
    let doc = Html::parse_document(html);
    let mut h = [false; 9];
    for node in doc.tree.nodes() {
        let Node::Element(e) = node.value() else { continue };
        match e.name() {
            "script" => h[0] = true,
            "iframe" | "frame" => h[3] = true,
            "form" | "input" | "button" | "textarea" => h[4] = true,
            "object" | "embed" => h[5] = true,
            "style" => h[6] = true,
            "svg" => h[8] = true,
            _ => {}
        }
        for (name, value) in e.attrs() {
            if name.starts_with("on") {
                h[1] = true;
            }
            if value.trim_start().to_ascii_lowercase().starts_with("javascript:") {
                h[2] = true;
            }
            if name == "style" {
                h[7] = true;
            }
        }
    }
    h
}

fn normalise(s: &str) -> String {
    s.split(char::is_whitespace).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------
// Running

struct Outcome {
    text: Option<String>, // None: error or panic
    error: Option<String>,
    hazards: [bool; 9],
    raw: Option<String>,
}

fn run_once(c: &Candidate, html: &str, url: &str) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| (c.run)(html, url))) {
        Ok(Ok(out)) => {
            Outcome { text: Some(html_to_text(&out)), error: None, hazards: hazards(&out), raw: Some(out) }
        }
        Ok(Err(e)) => {
            Outcome { text: None, error: Some(format!("error: {e}")), hazards: [false; 9], raw: None }
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Outcome { text: None, error: Some(format!("panic: {msg}")), hazards: [false; 9], raw: None }
        }
    }
}

#[derive(Default)]
struct Score {
    pages_all_must: usize,
    must_kept: usize,
    must_total: usize,
    leaked: usize,
    must_not_total: usize,
    failures: usize,
    samples_us: Vec<f64>,
    page_medians_us: Vec<f64>,
    out_words: usize,
    hazard_pages: [usize; 9],
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------------------------
// Stress: synthetic hostile pages, each candidate in a child process (a stack overflow aborts
// the process, which catch_unwind cannot catch), the call on a thread with a 2 MiB stack: the
// size of a tokio worker or spawn_blocking thread, where feedsieve would run it.

const STRESS_CASES: &[&str] = &["nest-1k", "nest-10k", "nest-100k", "flat-4mb", "links-50k"];
const STRESS_TIMEOUT_S: u64 = 30;
/// A baseline row: html5ever parsing (through scraper) and serialising, no extraction.
const PARSE_ONLY: &str = "(baseline: html5ever parse + serialise only)";

fn stress_page(case: &str) -> String {
    let para = "<p>The harbour police said the inquiry into the stolen containers was continuing, and appealed for witnesses.</p>\n";
    match case {
        "nest-1k" | "nest-10k" | "nest-100k" => {
            let n: usize = match case {
                "nest-1k" => 1_000,
                "nest-10k" => 10_000,
                _ => 100_000,
            };
            format!(
                "<html><body>{}<article>{}</article>{}</body></html>",
                "<div>".repeat(n),
                para.repeat(10),
                "</div>".repeat(n)
            )
        }
        "flat-4mb" => {
            format!("<html><body><article>{}</article></body></html>", para.repeat(4_000_000 / para.len()))
        }
        "links-50k" => format!(
            "<html><body><nav><ul>{}</ul></nav><article>{}</article></body></html>",
            (0..50_000).map(|i| format!("<li><a href=\"/l/{i}\">link {i}</a></li>")).collect::<String>(),
            para.repeat(10)
        ),
        _ => panic!("unknown case {case}"),
    }
}

/// In the child: run one candidate on one case, print "ok <ms> <output bytes>" or "err <message>".
fn stress_one(name: &str, case: &str) {
    let c = if name == PARSE_ONLY {
        Candidate {
            name: PARSE_ONLY,
            version: "",
            call: "",
            run: |html, _| Ok(Html::parse_document(html).root_element().html().len().to_string()),
        }
    } else {
        candidates().into_iter().find(|c| c.name == name).expect("candidate")
    };
    let html = stress_page(case);
    let url = "https://news.example.org/stress.html".to_string();
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let t0 = Instant::now();
            let r = (c.run)(&html, &url);
            (t0.elapsed().as_millis(), r)
        })
        .unwrap();
    match handle.join() {
        Ok((ms, Ok(out))) => println!("ok {ms} {}", out.len()),
        Ok((ms, Err(e))) => println!("err {ms} {e}"),
        Err(_) => println!("panic"),
    }
}

fn stress() {
    let exe = std::env::current_exe().unwrap();
    println!(
        "Stress: synthetic pages, each run in a child process on a 2 MiB-stack thread, {STRESS_TIMEOUT_S} s limit"
    );
    println!(
        "(nest-N: an article inside N nested <div>s; flat-4mb: 4 MB of paragraphs; links-50k: a nav of 50,000 links)"
    );
    println!();
    print!("| crate |");
    for case in STRESS_CASES {
        print!(" {case} |");
    }
    println!();
    print!("|---|");
    for _ in STRESS_CASES {
        print!("---|");
    }
    println!();
    for name in std::iter::once(PARSE_ONLY).chain(candidates().iter().map(|c| c.name)) {
        print!("| {name} |");
        for case in STRESS_CASES {
            let mut child = std::process::Command::new(&exe)
                .args(["--stress-one", name, case])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let t0 = Instant::now();
            let status = loop {
                if let Some(st) = child.try_wait().unwrap() {
                    break Some(st);
                }
                if t0.elapsed().as_secs() >= STRESS_TIMEOUT_S {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            };
            let mut out = String::new();
            use std::io::Read;
            if let Some(mut so) = child.stdout.take() {
                let _ = so.read_to_string(&mut out);
            }
            let cell = match status {
                None => format!("timeout (>{STRESS_TIMEOUT_S} s)"),
                Some(st) if st.success() => {
                    let w: Vec<&str> = out.split_whitespace().collect();
                    match w.as_slice() {
                        ["ok", ms, _bytes] => format!("ok, {ms} ms"),
                        ["err", ms, rest @ ..] => format!("error after {ms} ms: {}", rest.join(" ")),
                        _ => out.trim().to_string(),
                    }
                }
                Some(st) => {
                    use std::os::unix::process::ExitStatusExt;
                    match st.signal() {
                        Some(6) => "CRASH (SIGABRT: stack overflow)".to_string(),
                        Some(11) => "CRASH (SIGSEGV)".to_string(),
                        Some(sig) => format!("CRASH (signal {sig})"),
                        None => format!("exit {}", st.code().unwrap_or(-1)),
                    }
                }
            };
            print!(" {cell} |");
        }
        println!();
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.len() == 4 && argv[1] == "--stress-one" {
        std::panic::set_hook(Box::new(|_| {}));
        return stress_one(&argv[2], &argv[3]);
    }
    if argv.iter().any(|a| a == "--stress") {
        return stress();
    }
    let mut args = std::env::args().skip(1);
    let mut manifest_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/articles/manifest.toml");
    let (mut reps, mut only, mut dump, mut check, mut verbose) =
        (20usize, None::<String>, None::<PathBuf>, false, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--reps" => reps = args.next().and_then(|v| v.parse().ok()).expect("--reps N"),
            "--only" => only = args.next(),
            "--dump" => dump = args.next().map(PathBuf::from),
            "--check" => check = true,
            "-v" | "--verbose" => verbose = true,
            "-h" | "--help" => {
                println!(
                    "usage: extract-eval [MANIFEST] [--reps N] [--only NAME] [--dump DIR] [--check] [-v] | --stress"
                );
                return;
            }
            _ => manifest_path = PathBuf::from(a),
        }
    }
    let dir = manifest_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let manifest: Manifest = toml::from_str(&std::fs::read_to_string(&manifest_path).expect("read manifest"))
        .expect("parse manifest");

    let pages: Vec<(&Page, String, &'static str)> = manifest
        .page
        .iter()
        .map(|p| {
            let bytes = std::fs::read(dir.join(&p.file)).unwrap_or_else(|e| panic!("{}: {e}", p.file));
            let (html, enc) = decode(&bytes);
            (p, html, enc)
        })
        .collect();

    // The manifest's own promise: every phrase is in the page's visible text.
    let mut bad = Vec::new();
    for (p, html, _) in &pages {
        let text = html_to_text(html);
        for ph in p.must.iter().chain(&p.must_not) {
            match text.matches(ph.as_str()).count() {
                1 => {}
                0 => bad.push(format!("{}: not in the visible text: {ph:?}", p.file)),
                n => bad.push(format!("{}: {n} times in the visible text: {ph:?}", p.file)),
            }
            let words = ph.split_whitespace().count();
            if p.must.contains(ph) && !(4..=10).contains(&words) {
                bad.push(format!("{}: must phrase of {words} words: {ph:?}", p.file));
            }
        }
        if !(3..=5).contains(&p.must.len()) || !(2..=4).contains(&p.must_not.len()) {
            bad.push(format!("{}: {} must and {} must_not phrases", p.file, p.must.len(), p.must_not.len()));
        }
    }
    if !bad.is_empty() {
        eprintln!("manifest problems:\n{}", bad.join("\n"));
        std::process::exit(1);
    }
    let must_total: usize = pages.iter().map(|(p, ..)| p.must.len()).sum();
    let must_not_total: usize = pages.iter().map(|(p, ..)| p.must_not.len()).sum();
    println!(
        "manifest: {} pages, {} must phrases, {} must_not phrases; each once in its page's visible text",
        pages.len(),
        must_total,
        must_not_total
    );
    if check {
        for (p, _, enc) in &pages {
            println!("- {} ({enc}): {}", p.file, p.shape);
        }
        return;
    }

    // Panics are caught and counted; keep their default report off the table.
    std::panic::set_hook(Box::new(|_| {}));

    let cands: Vec<Candidate> =
        candidates().into_iter().filter(|c| only.as_deref().is_none_or(|o| c.name == o)).collect();
    let mut scores = Vec::new();
    // page -> per-candidate cell for the detail table
    let mut detail: Vec<Vec<String>> = vec![Vec::new(); pages.len()];

    for c in &cands {
        let mut s = Score { must_total, must_not_total, ..Default::default() };
        for (i, (p, html, _)) in pages.iter().enumerate() {
            let url = format!("https://news.example.org/{}", p.file);
            let o = run_once(c, html, &url);
            let (kept, leaked): (Vec<&String>, Vec<&String>) = match &o.text {
                Some(t) => (
                    p.must.iter().filter(|ph| t.contains(ph.as_str())).collect(),
                    p.must_not.iter().filter(|ph| t.contains(ph.as_str())).collect(),
                ),
                None => (Vec::new(), Vec::new()),
            };
            if o.text.is_none() {
                s.failures += 1;
            }
            for (n, hit) in s.hazard_pages.iter_mut().zip(o.hazards) {
                *n += usize::from(hit);
            }
            if kept.len() == p.must.len() {
                s.pages_all_must += 1;
            }
            s.must_kept += kept.len();
            s.leaked += leaked.len();
            s.out_words += o.text.as_deref().map_or(0, |t| t.split(' ').count());
            let mut cell = format!("{}/{}", kept.len(), p.must.len());
            if !leaked.is_empty() {
                cell.push_str(&format!(" +{}", leaked.len()));
            }
            if o.text.is_none() {
                cell = "FAIL".into();
            }
            detail[i].push(cell);
            if verbose {
                if let Some(e) = &o.error {
                    println!("  [{}] {}: {e}", c.name, p.file);
                }
                for ph in p.must.iter().filter(|ph| !kept.contains(ph)) {
                    println!("  [{}] {}: missed {ph:?}", c.name, p.file);
                }
                for ph in &leaked {
                    println!("  [{}] {}: leaked {ph:?}", c.name, p.file);
                }
            }
            if let (Some(d), Some(t), Some(raw)) = (&dump, &o.text, &o.raw) {
                let sub = d.join(c.name.replace('/', "_"));
                std::fs::create_dir_all(&sub).unwrap();
                std::fs::write(sub.join(format!("{}.txt", p.file)), t).unwrap();
                std::fs::write(sub.join(format!("{}.out.html", p.file)), raw).unwrap();
            }

            // Speed: one warm-up, then `reps` timed runs of the extractor call alone.
            let _ = catch_unwind(AssertUnwindSafe(|| (c.run)(html, &url)));
            let mut page_samples = Vec::with_capacity(reps);
            for _ in 0..reps {
                let t0 = Instant::now();
                let r = catch_unwind(AssertUnwindSafe(|| (c.run)(html, &url)));
                let us = t0.elapsed().as_secs_f64() * 1e6;
                std::hint::black_box(&r);
                page_samples.push(us);
            }
            page_samples.sort_by(f64::total_cmp);
            s.page_medians_us.push(percentile(&page_samples, 50.0));
            s.samples_us.extend(page_samples);
        }
        s.samples_us.sort_by(f64::total_cmp);
        scores.push(s);
    }

    println!("reps per page: {reps} (after one warm-up); input: {} pages", pages.len());
    println!();
    println!(
        "| crate | version | pages with all `must` | `must` kept | `must_not` leaked | failures | median µs/page | p95 µs/page | corpus ms (sum of page medians) | words out |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (c, s) in cands.iter().zip(&scores) {
        println!(
            "| {} | {} | {}/{} | {}/{} ({:.1}%) | {}/{} | {} | {:.0} | {:.0} | {:.1} | {} |",
            c.name,
            c.version,
            s.pages_all_must,
            pages.len(),
            s.must_kept,
            s.must_total,
            100.0 * s.must_kept as f64 / s.must_total as f64,
            s.leaked,
            s.must_not_total,
            s.failures,
            percentile(&s.samples_us, 50.0),
            percentile(&s.samples_us, 95.0),
            s.page_medians_us.iter().sum::<f64>() / 1000.0,
            s.out_words,
        );
    }
    println!();
    println!("Per page: `must` kept/total, `+N` = N `must_not` phrases leaked, FAIL = error or panic");
    println!();
    print!("| page | encoding |");
    for c in &cands {
        print!(" {} |", c.name);
    }
    println!();
    print!("|---|---|");
    for _ in &cands {
        print!("---|");
    }
    println!();
    for (i, (p, _, enc)) in pages.iter().enumerate() {
        print!("| {} | {} |", p.file, enc);
        for cell in &detail[i] {
            print!(" {cell} |");
        }
        println!();
    }
    println!();
    println!("Raw HTML output: pages whose output still has the markup (what a sanitiser must remove)");
    println!();
    print!("| crate |");
    for h in HAZARDS {
        print!(" {h} |");
    }
    println!();
    print!("|---|");
    for _ in HAZARDS {
        print!("---|");
    }
    println!();
    for (c, s) in cands.iter().zip(&scores) {
        print!("| {} |", c.name);
        for n in s.hazard_pages {
            print!(" {n} |");
        }
        println!();
    }
    println!();
    println!("Calls:");
    for c in &cands {
        println!("- {}: {}", c.name, c.call);
    }
}
