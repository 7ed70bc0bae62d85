//! The explainer in headless Chromium as a documentation site embeds it: the built app
//! (web/dist) on a plain static file server, the repository's embedding example page,
//! no popgate server anywhere. In the page's `<iframe>` (scenario 2, in Japanese): a
//! step back and forward across the POP3 login shows the grant appear with its
//! countdown and the Japanese annotation of the `+OK`; scenario 3's clock jump removes
//! the grant and its relay is refused with `554 5.7.1`; the page's own deep link to
//! that step, opened afresh, lands on it.

use popgate_tests::browser::{Browser, StaticServer, js, web_dist};
use serde_json::Value;

/// The annotation of the `+OK` that answers PASS, in Japanese (web/src/i18n/ja.rs,
/// key `pop3 +OK PASS`): the grant exists before the reply is written.
const JA_PASS_OK: &str = "ログイン成功。この応答を書く前に、このアドレスへのグラントが作られている";
/// The annotation of `554 5.7.1`, in Japanese (key `smtp 554 5.7.1`).
const JA_RELAY_DENIED: &str = "リレー拒否";
/// Scenario 2's step note for PASS, in Japanese (its JSON in popgate-core/scenarios).
const JA_PASS_NOTE: &str = "グラント（リレー許可）をグラント表に記録します";
/// Scenario 3's 30 minute jump of the virtual clock (its `advance` step).
const TTL_MS: u64 = 30 * 60 * 1000;

/// The explainer root's attributes (data-scenario, data-position, data-lang, ...).
fn root_where(cond: &str) -> String {
    format!(
        r#"(() => {{
            const e = attrs(q("[data-testid=explainer]"));
            return e && ({cond}) ? e : null;
        }})()"#
    )
}

fn field<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

/// The current step's protocol lines (`ex-line`): text, annotation key and meaning.
const LINES: &str = r#"qa("[data-testid=ex-line]").map((l) => ({
    dir: l.dataset.dir,
    key: l.dataset.annotation || null,
    text: text(q(".text", l)),
    meaning: text(q("[data-testid=ex-annotation] .meaning", l)),
}))"#;

fn line_with<'a>(lines: &'a Value, key: &str) -> &'a Value {
    lines
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["key"] == key))
        .unwrap_or_else(|| panic!("no ex-line annotated {key:?} in {lines}"))
}

#[test]
fn the_embedded_explainer_steps_to_the_grant_expires_it_and_deep_links() {
    let site = StaticServer::start(&web_dist());
    let browser = Browser::start("explainer");
    browser.goto(&format!("{}embed/example.html", site.url));

    // The iframe's URL is a deep link: scenario 2 after its third step, in Japanese.
    browser.enter_frame("[data-testid=embed-iframe]");
    let root = browser.wait(
        "the iframe's explainer on scenario 2, step 3, in Japanese",
        &root_where("e['data-position'] === '3'"),
    );
    assert_eq!(field(&root, "data-scenario"), "pop-then-relay", "{root}");
    assert_eq!(field(&root, "data-lang"), "ja", "{root}");

    // One step back: before PASS there is no grant.
    browser.click("[data-testid=ex-back]");
    browser.wait(
        "step 2 with an empty grant table",
        &root_where(
            "e['data-position'] === '2' && !q('[data-testid=grant-row]') && q('[data-testid=grants-empty]')",
        ),
    );
    // Forward across PASS: the grant appears, counting down on the virtual clock.
    browser.click("[data-testid=ex-forward]");
    let grant = browser.wait(
        "step 3 with the grant row and its countdown",
        r#"(() => {
            const e = q("[data-testid=explainer][data-position='3']");
            const row = q("[data-testid=grant-row]");
            const countdown = row && q("[data-testid=grant-countdown]", row);
            return e && countdown ? { row: attrs(row), countdown: attrs(countdown) } : null;
        })()"#,
    );
    assert_eq!(grant["row"]["data-key"], "198.51.100.23/32", "{grant}");
    assert_eq!(grant["row"]["data-user"], "taro@example.test", "{grant}");
    assert_eq!(
        grant["countdown"]["data-remaining-ms"],
        TTL_MS.to_string(),
        "the virtual clock stands still between steps: {grant}"
    );
    let lines = browser.eval(LINES);
    let ok = line_with(&lines, "pop3 +OK PASS");
    assert_eq!(ok["dir"], "server", "{lines}");
    assert!(
        ok["meaning"]
            .as_str()
            .is_some_and(|m| m.contains(JA_PASS_OK)),
        "the Japanese annotation of +OK after PASS: {lines}"
    );
    let note = browser.eval(r#"text(q("[data-testid=ex-note]"))"#);
    assert!(
        note.as_str().is_some_and(|n| n.contains(JA_PASS_NOTE)),
        "the step's note in Japanese: {note}"
    );
    assert!(
        browser
            .eval(r#"q("[data-testid=diagram-arrow][data-kind=grant]") !== null"#)
            .as_bool()
            .unwrap_or(false),
        "the diagram draws the grant call"
    );
    // A screenshot is of the whole window, taken from inside the frame so that the
    // frame's step animation has ended.
    browser.screenshot("grant-ja");

    // Scenario 3 (the picker's third entry): log in, then the clock jumps 30 minutes.
    browser.select_value("[data-testid=ex-scenario]", "2");
    browser.wait(
        "scenario 3 at its start",
        &root_where("e['data-scenario'] === 'grant-expires' && e['data-position'] === '0'"),
    );
    for step in 1..=4 {
        browser.click("[data-testid=ex-forward]");
        browser.wait(
            &format!("scenario 3, step {step}"),
            &root_where(&format!("e['data-position'] === '{step}'")),
        );
    }
    let before = browser.wait(
        "the grant after the login",
        r#"attrs(q("[data-testid=grant-row] [data-testid=grant-countdown]"))"#,
    );
    let now_before: u64 = browser
        .eval(r#"q("[data-testid=ex-clock]").dataset.now"#)
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("ex-clock data-now");
    assert_eq!(before["data-remaining-ms"], TTL_MS.to_string(), "{before}");
    browser.click("[data-testid=ex-forward]");
    let jumped = browser.wait(
        "the clock jump to remove the grant",
        &root_where("e['data-position'] === '5' && !q('[data-testid=grant-row]')"),
    );
    let now_after: u64 = field(&jumped, "data-now").parse().expect("data-now");
    assert_eq!(
        now_after - now_before,
        TTL_MS,
        "the virtual clock jumped the grant's whole time to live"
    );
    assert!(
        browser
            .eval(r#"q("[data-testid=diagram-arrow][data-kind=expired]") !== null"#)
            .as_bool()
            .unwrap_or(false),
        "the diagram draws the expiry"
    );
    // Connect, EHLO, MAIL, RCPT: the relay is refused.
    for step in 6..=9 {
        browser.click("[data-testid=ex-forward]");
        browser.wait(
            &format!("scenario 3, step {step}"),
            &root_where(&format!("e['data-position'] === '{step}'")),
        );
    }
    let lines = browser.eval(LINES);
    let refused = line_with(&lines, "smtp 554 5.7.1");
    assert!(
        refused["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("554 5.7.1")),
        "{lines}"
    );
    assert!(
        refused["meaning"]
            .as_str()
            .is_some_and(|m| m.contains(JA_RELAY_DENIED)),
        "the Japanese annotation of 554 5.7.1: {lines}"
    );
    // The standalone page keeps its URL on the current step: that is the deep link.
    let link = browser
        .eval("location.href")
        .as_str()
        .expect("the iframe's URL")
        .to_string();
    assert!(link.contains("#/explainer/3/9"), "{link}");
    browser.screenshot("refusal-ja");
    browser.leave_frames();

    // The deep link, opened as a page of its own, lands on that step.
    browser.goto(&link);
    let landed = browser.wait(
        "the deep link's step",
        &root_where("e['data-position'] === '9'"),
    );
    assert_eq!(field(&landed, "data-scenario"), "grant-expires", "{landed}");
    assert_eq!(field(&landed, "data-lang"), "ja", "{landed}");
    let step = browser.eval(r#"q("[data-testid=ex-step]").dataset.position"#);
    assert_eq!(step, "9");
    let lines = browser.eval(LINES);
    line_with(&lines, "smtp 554 5.7.1");
    assert!(
        browser
            .eval(&format!("q({}) === null", js("[data-testid=grant-row]")))
            .as_bool()
            .unwrap_or(false),
        "no grant at the refusal"
    );
    let shot = browser.screenshot("deep-link");
    assert!(shot.is_file(), "{} was written", shot.display());
}
