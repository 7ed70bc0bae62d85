//! How the page is asked to start: the URL (`?explainer&lang=ja#/explainer/2/3`) or the
//! options of the JS `mount(element, options)`. Pure parsing, tested natively.
//!
//! The fragment form, which an `<iframe>` or a shared link carries:
//!
//! ```text
//! #/explainer                       the explainer, first scenario, at its start
//! #/explainer/<scenario>            that scenario (its number or its id)
//! #/explainer/<scenario>/<step>     after <step> steps (0: the start)
//! #/explainer/2/3?lang=ja&theme=dark   options may follow, as in a query string
//! ```
//!
//! The query string takes `explainer` (a bare flag), `lang`, `theme`, `scenario` and
//! `step`; the fragment wins where both say something, because it is the more specific
//! (a link to one step). Anything unknown is ignored: a link from a newer version still
//! opens something.

use crate::i18n::Lang;
use serde_json::Value;

/// Which app the module runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// The live dashboard, fed by the server's WebSocket.
    #[default]
    Live,
    /// The explainer, fed by the simulator: no server needed.
    Explainer,
}

/// Light, dark, or whatever the reader's system prefers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Theme {
    #[default]
    Auto,
    Light,
    Dark,
}

impl Theme {
    fn parse(s: &str) -> Option<Theme> {
        match s.trim().to_ascii_lowercase().as_str() {
            "light" => Some(Theme::Light),
            "dark" => Some(Theme::Dark),
            "auto" | "system" => Some(Theme::Auto),
            _ => None,
        }
    }

    /// The value of the `data-theme` attribute (`None`: follow the system).
    pub fn attr(self) -> Option<&'static str> {
        match self {
            Theme::Auto => None,
            Theme::Light => Some("light"),
            Theme::Dark => Some("dark"),
        }
    }
}

/// What the page or the embedding host asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub mode: Mode,
    /// `None`: the browser's language decides.
    pub lang: Option<Lang>,
    /// A scenario's number (`"2"`) or id.
    pub scenario: Option<String>,
    /// Steps already taken when the page opens.
    pub step: Option<usize>,
    pub theme: Theme,
}

impl Options {
    /// From `location.search` and `location.hash` (each with or without its `?`/`#`).
    pub fn from_url(search: &str, hash: &str) -> Options {
        let mut o = Options::default();
        o.apply_pairs(search.trim_start_matches('?'));
        let hash = hash.trim_start_matches('#');
        let (path, query) = hash.split_once('?').unwrap_or((hash, ""));
        let mut parts = path.trim_matches('/').split('/');
        if parts.next() == Some("explainer") {
            o.mode = Mode::Explainer;
            if let Some(scenario) = parts.next().filter(|s| !s.is_empty()) {
                o.scenario = Some(decode(scenario));
            }
            if let Some(step) = parts.next().and_then(|s| s.parse().ok()) {
                o.step = Some(step);
            }
        }
        o.apply_pairs(query);
        o
    }

    fn apply_pairs(&mut self, query: &str) {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value);
            match name {
                "explainer" => self.mode = Mode::Explainer,
                "mode" => self.mode = parse_mode(&value).unwrap_or(self.mode),
                "lang" => self.lang = Lang::from_tag(&value).or(self.lang),
                "theme" => self.theme = Theme::parse(&value).unwrap_or(self.theme),
                "scenario" if !value.is_empty() => self.scenario = Some(value),
                "step" => self.step = value.parse().ok().or(self.step),
                _ => {}
            }
        }
    }

    /// From the JSON of the options object given to `mount` (`{mode, lang, scenario,
    /// step, theme}`, every field optional; `scenario` a number or a string). Unknown
    /// or ill-typed fields are ignored, as in a URL.
    pub fn from_json(json: &str) -> Options {
        // Read through a `Value`, which the app's other JSON already needs, rather than a
        // derived struct: one generic decoder less in the module.
        let value: Value = serde_json::from_str(json).unwrap_or_default();
        let text = |name: &str| match value.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        Options {
            mode: text("mode")
                .and_then(|m| parse_mode(&m))
                .unwrap_or_default(),
            lang: text("lang").and_then(|l| Lang::from_tag(&l)),
            scenario: text("scenario").filter(|s| !s.is_empty()),
            step: text("step").and_then(|s| s.parse().ok()),
            theme: text("theme")
                .and_then(|t| Theme::parse(&t))
                .unwrap_or_default(),
        }
    }

    /// The language to show: the option, else the browser's (`navigator.language`),
    /// else English.
    pub fn language(&self, browser: Option<&str>) -> Lang {
        self.lang
            .or_else(|| browser.and_then(Lang::from_tag))
            .unwrap_or_default()
    }
}

fn parse_mode(s: &str) -> Option<Mode> {
    match s.trim().to_ascii_lowercase().as_str() {
        "explainer" => Some(Mode::Explainer),
        "live" | "dashboard" => Some(Mode::Live),
        _ => None,
    }
}

/// The fragment that opens `scenario` after `step` steps: `#/explainer/2/3`.
pub fn step_fragment(scenario: &str, step: usize) -> String {
    format!(
        "#/explainer/{}/{step}",
        popgate_core::api::path_segment(scenario)
    )
}

/// Percent-decodes a URL component (`+` stays a plus: fragments are not forms). Bytes
/// that do not form UTF-8 are replaced, never trusted.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_options_is_the_live_dashboard() {
        assert_eq!(Options::from_url("", ""), Options::default());
        // The dashboard's own fragment (the admin token) does not start the explainer.
        assert_eq!(Options::from_url("", "#token=abc").mode, Mode::Live);
    }

    #[test]
    fn the_query_flag_starts_the_explainer() {
        let o = Options::from_url("?explainer&lang=ja", "");
        assert_eq!(o.mode, Mode::Explainer);
        assert_eq!(o.lang, Some(Lang::Ja));
        assert_eq!((o.scenario, o.step), (None, None));
        let o = Options::from_url("?mode=explainer&theme=dark&scenario=4&step=2", "");
        assert_eq!(o.mode, Mode::Explainer);
        assert_eq!(o.theme, Theme::Dark);
        assert_eq!((o.scenario.as_deref(), o.step), (Some("4"), Some(2)));
    }

    #[test]
    fn a_deep_link_opens_a_scenario_at_a_step() {
        let o = Options::from_url("", "#/explainer/2/3");
        assert_eq!(o.mode, Mode::Explainer);
        assert_eq!((o.scenario.as_deref(), o.step), (Some("2"), Some(3)));
        let o = Options::from_url(
            "?explainer&lang=en",
            "#/explainer/expiry/0?lang=ja&theme=light",
        );
        assert_eq!((o.scenario.as_deref(), o.step), (Some("expiry"), Some(0)));
        // The fragment is more specific than the query.
        assert_eq!(o.lang, Some(Lang::Ja));
        assert_eq!(o.theme, Theme::Light);
        let o = Options::from_url("", "/explainer/");
        assert_eq!((o.mode, o.scenario, o.step), (Mode::Explainer, None, None));
        let o = Options::from_url("", "#/explainer/3/x");
        assert_eq!((o.scenario.as_deref(), o.step), (Some("3"), None));
        let o = Options::from_url("", "#/explainer/a%20b");
        assert_eq!(o.scenario.as_deref(), Some("a b"));
        // Unknown values are ignored, never an error.
        let o = Options::from_url("?explainer&lang=xx&theme=neon&step=-1", "");
        assert_eq!((o.lang, o.theme, o.step), (None, Theme::Auto, None));
    }

    #[test]
    fn the_link_to_a_step_reads_back() {
        let link = step_fragment("2", 5);
        assert_eq!(link, "#/explainer/2/5");
        let o = Options::from_url("", &link);
        assert_eq!((o.scenario.as_deref(), o.step), (Some("2"), Some(5)));
        let o = Options::from_url("", &step_fragment("a/b", 1));
        assert_eq!(o.scenario.as_deref(), Some("a/b"));
    }

    #[test]
    fn mount_options_from_json() {
        let o = Options::from_json(r#"{"mode":"explainer","lang":"ja","scenario":2,"step":3}"#);
        assert_eq!(o.mode, Mode::Explainer);
        assert_eq!(o.lang, Some(Lang::Ja));
        assert_eq!((o.scenario.as_deref(), o.step), (Some("2"), Some(3)));
        let o = Options::from_json(r#"{"scenario":"expiry","step":"1","theme":"dark","x":1}"#);
        assert_eq!(o.mode, Mode::Live);
        assert_eq!(
            (o.scenario.as_deref(), o.step, o.theme),
            (Some("expiry"), Some(1), Theme::Dark)
        );
        assert_eq!(Options::from_json("null"), Options::default());
        assert_eq!(Options::from_json("not json"), Options::default());
        assert_eq!(
            Options::from_json(r#"{"lang":7,"step":true}"#),
            Options::default()
        );
    }

    #[test]
    fn language_option_then_browser_then_english() {
        let mut o = Options::default();
        assert_eq!(o.language(None), Lang::En);
        assert_eq!(o.language(Some("ja-JP")), Lang::Ja);
        assert_eq!(o.language(Some("fr-FR")), Lang::En);
        o.lang = Some(Lang::En);
        assert_eq!(o.language(Some("ja")), Lang::En);
    }
}
